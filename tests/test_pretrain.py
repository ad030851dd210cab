"""tools/pretrain_backbone.py's library: crops of the synthetic set train a ResNet classifier
whose backbone is written in detectron2's R-50.pkl layout, loads into a detector's frozen-BN
backbone by key suffix, is reused when cached, and is what synthetic-pretrained:// names."""

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from clock_distill import pretrain
from clock_distill.data.synthetic import generate_synthetic_kitti
from clock_distill.modeling import build_resnet


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets") / "kitti_synthetic"
    generate_synthetic_kitti(root, seed=5, width=160, height=64, splits={"train": 4, "tune": 2, "val": 1})
    return root


class Detector(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.backbone = build_resnet(18, ("res4", "res5"), freeze_at=1, norm="FrozenBN", width=width)


def test_pretrain_writes_d2_layout_loads_and_is_cached(data, tmp_path):
    torch.set_num_threads(1)
    logs = []
    out = pretrain.pretrain_backbone(data, 18, 0.5, out=tmp_path / "r18.pkl", steps=2, batch_size=4, log=logs.append)
    blob = pickle.loads(out.read_bytes())
    assert blob["matching_heuristics"] is True and "__author__" in blob
    keys = set(blob["model"])
    assert {"stem.conv1.weight", "stem.conv1.norm.running_var", "res2.0.conv1.weight", "res5.1.conv2.norm.bias"} <= keys
    assert not any(k.startswith("fc") or k.endswith("num_batches_tracked") for k in keys)
    assert all(isinstance(v, np.ndarray) for v in blob["model"].values())
    meta = (tmp_path / "r18.json").read_text()
    assert '"eval_accuracy"' in meta and '"tune"' in meta

    from detectron2.checkpoint import DetectionCheckpointer

    det = Detector(0.5)
    DetectionCheckpointer(det).load(str(out))
    for k, v in det.backbone.state_dict().items():
        torch.testing.assert_close(v, torch.as_tensor(blob["model"][k]), msg=k)

    mtime = out.stat().st_mtime_ns
    pretrain.pretrain_backbone(data, 18, 0.5, out=out, steps=2, batch_size=4, log=logs.append)
    assert out.stat().st_mtime_ns == mtime and "reused" in logs[-1]
    pretrain.pretrain_backbone(data, 18, 0.5, out=out, steps=3, batch_size=4, log=logs.append)
    assert out.stat().st_mtime_ns != mtime  # other settings: retrained


def test_synthetic_pretrained_path_makes_then_reuses(data, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("CLOCK_DISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(data.parent))
    monkeypatch.setitem(pretrain.PRETRAIN_DEFAULTS, "steps", 2)
    monkeypatch.setitem(pretrain.PRETRAIN_DEFAULTS, "batch_size", 4)
    pretrain.register_pretrained_handler()
    pretrain.register_pretrained_handler()  # idempotent
    from detectron2.checkpoint import DetectionCheckpointer

    det = Detector(0.5)
    before = det.backbone.res3[0].conv1.weight.clone()
    DetectionCheckpointer(det).load("synthetic-pretrained://R-18-w0.5")
    path = tmp_path / "cache" / "synthetic_R-18-w0.5.pkl"
    assert path.is_file()
    assert not torch.equal(before, det.backbone.res3[0].conv1.weight)
    with pytest.raises(ValueError, match="R-<depth>"):
        pretrain.parse_spec("resnet18")
