"""The detectron2 install script: its patches, and the pure-Python build it makes."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("install_detectron2", ROOT / "tools" / "install_detectron2.py")
install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install)

import detectron2  # noqa: E402

PURE = importlib.metadata.version("detectron2") == install.PURE_VERSION
needs_pure = pytest.mark.skipif(not PURE, reason="an upstream detectron2 build is installed, not the pb1 fallback")


@needs_pure
def test_cpp_ops_raise_clear_error():
    import torch
    from detectron2 import _C
    from detectron2.layers import nms_rotated
    from detectron2.structures import RotatedBoxes, pairwise_iou_rotated

    with pytest.raises(_C.MissingCppOpError, match=r"detectron2\._C\.nms_rotated is a C\+\+ op.*--source upstream"):
        nms_rotated(torch.zeros(2, 5), torch.zeros(2), 0.5)
    with pytest.raises(_C.MissingCppOpError, match="box_iou_rotated"):
        pairwise_iou_rotated(RotatedBoxes(torch.zeros(1, 5)), RotatedBoxes(torch.zeros(1, 5)))
    with pytest.raises(_C.MissingCppOpError, match="deform_conv_forward"):
        _C.deform_conv_forward()
    # Dunder lookups stay AttributeErrors so that introspection (copy, pickle, inspect) works.
    assert not hasattr(_C, "__wrapped__")


@needs_pure
def test_pure_build_runs_what_clock_distill_uses():
    import numpy as np
    from detectron2 import model_zoo
    from detectron2.data import transforms as T
    from detectron2.data.build import print_instances_class_histogram
    from detectron2.structures import BoxMode
    from detectron2.utils.collect_env import collect_env_info

    assert "pure-Python" in collect_env_info()  # collect_env (used by default_setup) works
    assert Path(model_zoo.get_config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml")).is_file()  # no pkg_resources
    # Image.LINEAR (gone in Pillow 10) was the default interpolation of ExtentTransform.
    out = T.ExtentTransform((0, 0, 8, 8), (4, 4)).apply_image(np.zeros((8, 8, 3), np.uint8))
    assert out.shape == (4, 4, 3)
    # np.int (gone in numpy 1.24) was used by the train loader's class histogram.
    print_instances_class_histogram(
        [{"annotations": [{"category_id": 0, "bbox": [0, 0, 1, 1], "bbox_mode": BoxMode.XYXY_ABS}]}], ["a"]
    )


def _fake_sdist(tmp_path):
    src = tmp_path / "src"
    for rel, old, _, count in install.PATCHES:
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text() if path.exists() else ""
        path.write_text(text + (old + "\n") * count)
    aliases = src / "detectron2" / "aliases.py"
    aliases.write_text("x = np.int\n" * install.NUMPY_ALIAS_COUNT + "y = np.int64, np.bool_, np.float32\n")
    return src


def test_apply_patches_exact_and_checked(tmp_path):
    src = _fake_sdist(tmp_path)
    install.apply_patches(src)
    assert "x = int\n" in (src / "detectron2" / "aliases.py").read_text()
    assert "np.int64, np.bool_, np.float32" in (src / "detectron2" / "aliases.py").read_text()
    assert "Image.LINEAR" not in (src / "detectron2/data/transforms/transform.py").read_text()
    assert "MissingCppOpError" in (src / "detectron2" / "_C.py").read_text()


def test_apply_patches_refuses_a_different_sdist(tmp_path):
    src = _fake_sdist(tmp_path)
    path = src / "detectron2/data/transforms/transform.py"
    path.write_text(path.read_text().replace("Image.LINEAR", "Image.BILINEAR"))
    with pytest.raises(install.InstallError, match=r"transform\.py: patch expects 1 occurrence"):
        install.apply_patches(src)


def test_second_run_is_a_noop(capsys):
    if not install.source_marker(sys.executable).exists():
        pytest.skip("detectron2 was not installed by tools/install_detectron2.py")
    assert install.main(["--python", sys.executable]) == 0
    assert "already installed" in capsys.readouterr().out


def test_sha256_mismatch_is_reported(tmp_path, monkeypatch):
    bad = tmp_path / install.SDIST_FILENAME
    bad.write_bytes(b"not the sdist")
    with pytest.raises(install.InstallError, match="does not match the pinned"):
        install.fetch_sdist(sys.executable, tmp_path)
