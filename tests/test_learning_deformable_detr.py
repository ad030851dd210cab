"""Learning test: deformable_detr overfits 4 synthetic KITTI images (the bars: learning_check.py)."""

import pytest

from learning_check import check_overfits_synthetic_kitti


@pytest.mark.slow
def test_deformable_detr_overfits_synthetic_kitti(tmp_path):
    check_overfits_synthetic_kitti(tmp_path, "deformable_detr")
