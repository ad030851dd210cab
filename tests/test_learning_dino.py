"""Learning test: dino overfits 4 synthetic KITTI images (the bars: learning_check.py)."""

import pytest

from learning_check import check_overfits_synthetic_kitti


@pytest.mark.slow
def test_dino_overfits_synthetic_kitti(tmp_path):
    check_overfits_synthetic_kitti(tmp_path, "dino")
