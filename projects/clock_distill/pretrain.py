"""The stand-in for ImageNet weights: a ResNet pretrained on the synthetic KITTI set.

Every real DETR starts from an ImageNet backbone (``train.init_checkpoint``). None can be
downloaded where the synthetic experiments run, so :func:`pretrain_backbone` trains detectron2's
ResNet as a classifier of object crops (Car, Pedestrian, Cyclist, Van, Person_sitting) and of
background crops, from the ``train`` split only, and writes the backbone in the layout of
detectron2's torchvision-converted ``R-50.pkl``: a pickle ``{"model": {"stem.conv1.weight":
ndarray, "res2.0.conv1.norm.running_mean": ..., ...}, "__author__": ..., "matching_heuristics":
True}``, which ``DetectionCheckpointer`` matches by key suffix to ``backbone.*`` (or
``student.backbone.*`` in a Distiller). A user with ImageNet weights points the same configs at
them instead.

``synthetic-pretrained://R-18-w0.5`` (and any depth/width) is a checkpoint path that resolves to
the cached file and makes it on first use; see :class:`SyntheticPretrainedHandler`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import re
import time
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from iopath.common.file_io import PathHandler
from torch import nn
from torch.nn import functional as F

__all__ = ["pretrain_backbone", "pretrained_path", "SyntheticPretrainedHandler", "register_pretrained_handler",
           "CROP_CLASSES", "PRETRAIN_DEFAULTS"]

logger = logging.getLogger(__name__)

CROP_CLASSES = ("Car", "Pedestrian", "Cyclist", "Van", "Person_sitting", "background")
# 600 steps: the tune-crop accuracy is ~96% (README, "Pretrained backbones"); R-18 takes 8-16 min on 2 cores.
PRETRAIN_DEFAULTS = dict(crop_size=64, steps=600, batch_size=64, lr=2e-3, seed=0, split="train", eval_split="tune")
PREFIX = "synthetic-pretrained://"


def cache_dir() -> Path:
    """``$CLOCK_DISTILL_CACHE`` or ``./output/pretrained``."""
    return Path(os.environ.get("CLOCK_DISTILL_CACHE", "output/pretrained"))


def pretrained_path(depth: int, width: float, root: Optional[Path] = None) -> Path:
    return (root or cache_dir()) / f"synthetic_R-{depth}-w{width:g}.pkl"


def _crops(root: Path, split: str, crop_size: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """All labelled objects of ``split`` (any difficulty, >= 8 px) and as many background
    boxes, each cut with 15% context and resized to a square: (N, S, S, 3) uint8 RGB, labels (N,)."""
    import cv2

    from .data.kitti import read_kitti_label_file

    ids = (root / "ImageSets" / f"{split}.txt").read_text().split()
    if not ids:
        raise ValueError(f"{root}/ImageSets/{split}.txt lists no images")
    images, labels = [], []

    def cut(img, x0, y0, x1, y1, label):
        h, w = img.shape[:2]
        cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 1.15, (y1 - y0) * 1.15
        side = max(bw, bh)
        a, b = int(round(cx - side / 2)), int(round(cy - side / 2))
        s = max(int(round(side)), 2)
        pad = np.zeros((s, s, 3), np.uint8)
        xa, ya, xb, yb = max(a, 0), max(b, 0), min(a + s, w), min(b + s, h)
        if xb <= xa or yb <= ya:
            return
        pad[ya - b:yb - b, xa - a:xb - a] = img[ya:yb, xa:xb]
        images.append(cv2.resize(pad, (crop_size, crop_size), interpolation=cv2.INTER_AREA))
        labels.append(label)

    for image_id in ids:
        img = cv2.imread(str(root / "training" / "image_2" / f"{image_id}.png"))
        if img is None:
            raise FileNotFoundError(f"cannot read {root}/training/image_2/{image_id}.png (listed in {split}.txt)")
        img = img[:, :, ::-1]
        objs = read_kitti_label_file(root / "training" / "label_2" / f"{image_id}.txt")
        boxes = []
        for o in objs:
            x0, y0, x1, y1 = o["bbox"]
            boxes.append((x0, y0, x1, y1))
            if o["type"] in CROP_CLASSES and min(x1 - x0, y1 - y0) >= 8:
                cut(img, x0, y0, x1, y1, CROP_CLASSES.index(o["type"]))
        h, w = img.shape[:2]
        for _ in range(max(1, sum(o["type"] in CROP_CLASSES for o in objs))):
            for _try in range(20):
                s = math.exp(rng.uniform(math.log(16), math.log(min(h, 130))))
                bw = s * rng.uniform(0.4, 2.0)
                x0, y0 = rng.uniform(0, max(w - bw, 1)), rng.uniform(0, max(h - s, 1))
                cand = (x0, y0, x0 + bw, y0 + s)
                if all(_iou(cand, b) < 0.1 for b in boxes):
                    cut(img, *cand, CROP_CLASSES.index("background"))
                    break
    return np.stack(images), np.asarray(labels, np.int64)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class _Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, channels: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.backbone(x)["res5"].mean((2, 3)))


def _batches(images: np.ndarray, mean: torch.Tensor, std: torch.Tensor, idx: np.ndarray, flip: Optional[np.ndarray]):
    x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float()
    if flip is not None:
        x = torch.where(torch.from_numpy(flip)[:, None, None, None], x.flip(-1), x)
    return (x - mean) / std


def pretrain_backbone(
    data_root: str | os.PathLike,
    depth: int = 18,
    width: float = 1.0,
    out: Optional[Path] = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    **overrides,
) -> Path:
    """Pretrain detectron2's ResNet (``depth``, ``width``, BN) as a crop classifier on
    ``data_root``'s train split and write it to ``out`` (default :func:`pretrained_path`).

    Reuses ``out`` when its sidecar ``.json`` records the same settings and data (unless
    ``force``). The pixel mean/std are the DETR configs' (ImageNet's, RGB), so the weights
    fit the detectors' preprocessing. Returns the path.
    """
    from .modeling.backbone import build_resnet, resnet_channels

    settings = {**PRETRAIN_DEFAULTS, **overrides}
    unknown = set(overrides) - set(PRETRAIN_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown pretraining settings {sorted(unknown)}; known: {sorted(PRETRAIN_DEFAULTS)}")
    root = Path(data_root)
    manifest = root / "synthetic.json"
    data_id = manifest.read_text() if manifest.exists() else str(root.resolve())
    key = {"depth": depth, "width": width, "classes": CROP_CLASSES, **settings,
           "data": hashlib.sha256(data_id.encode()).hexdigest()[:16], "version": 1}
    key = json.loads(json.dumps(key))  # as it reads back from the sidecar (tuples become lists)
    out = Path(out) if out is not None else pretrained_path(depth, width)
    meta_path = out.with_suffix(".json")
    if not force and out.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            log(f"pretrained backbone R-{depth} w{width:g} reused: {out}")
            return out

    t0 = time.perf_counter()
    rng = np.random.default_rng(settings["seed"])
    torch.manual_seed(settings["seed"])
    images, labels = _crops(root, settings["split"], settings["crop_size"], rng)
    ev_images, ev_labels = _crops(root, settings["eval_split"], settings["crop_size"], rng)
    log(f"pretraining R-{depth} w{width:g} on {len(labels)} crops of {root}/{settings['split']} "
        f"({np.bincount(labels, minlength=len(CROP_CLASSES)).tolist()} per class {list(CROP_CLASSES)}), "
        f"{settings['steps']} steps of {settings['batch_size']}")
    backbone = build_resnet(depth, out_features=("res5",), freeze_at=0, norm="BN", width=width)
    model = _Classifier(backbone, resnet_channels(depth, ("res5",), width)[0], len(CROP_CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=0.05)
    steps, bs = settings["steps"], settings["batch_size"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings["lr"], total_steps=steps, pct_start=0.1)
    mean = torch.tensor([123.675, 116.280, 103.530]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.120, 57.375]).view(1, 3, 1, 1)
    # Class-balanced sampling: background and Car would otherwise dominate.
    weights = 1.0 / np.bincount(labels, minlength=len(CROP_CLASSES))[labels]
    weights /= weights.sum()
    model.train()
    for step in range(steps):
        idx = rng.choice(len(labels), bs, p=weights)
        x = _batches(images, mean, std, idx, rng.random(bs) < 0.5)
        loss = F.cross_entropy(model(x), torch.from_numpy(labels[idx]), label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % max(steps // 10, 1) == 0 or step == 0:
            log(f"  step {step + 1}/{steps}  loss {loss.item():.3f}  {time.perf_counter() - t0:.0f} s")
    model.eval()
    correct = []
    with torch.no_grad():
        for i in range(0, len(ev_labels), 256):
            idx = np.arange(i, min(i + 256, len(ev_labels)))
            correct.append((model(_batches(ev_images, mean, std, idx, None)).argmax(1).numpy() == ev_labels[idx]))
    acc = float(np.concatenate(correct).mean())
    state = {k: v.detach().numpy().copy() for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump({"model": state, "__author__": "clock_distill tools/pretrain_backbone.py", "matching_heuristics": True}, f)
    os.replace(tmp, out)
    wall = time.perf_counter() - t0
    meta = {"key": key, "eval_accuracy": acc, "eval_split": settings["eval_split"], "num_train_crops": int(len(labels)),
            "num_eval_crops": int(len(ev_labels)), "wall_s": round(wall, 1), "num_tensors": len(state)}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"wrote {out}: {len(state)} tensors, {settings['eval_split']} crop accuracy {acc:.3f}, {wall:.0f} s")
    return out


_SPEC = re.compile(r"^R-(\d+)(?:-w([0-9.]+))?$")


def parse_spec(spec: str) -> Tuple[int, float]:
    m = _SPEC.match(spec)
    if not m:
        raise ValueError(f"{PREFIX}{spec}: expected {PREFIX}R-<depth>[-w<width>], e.g. {PREFIX}R-18-w0.5")
    return int(m.group(1)), float(m.group(2) or 1.0)


class SyntheticPretrainedHandler(PathHandler):
    """iopath handler for ``synthetic-pretrained://R-<depth>[-w<width>]``: the cached
    synthetic-pretrained backbone, made on first use from ``$DETECTRON2_DATASETS/kitti_synthetic``
    (logged; minutes on CPU), as ``detectron2://`` downloads ImageNet weights."""

    def _get_supported_prefixes(self):
        return [PREFIX]

    def _get_local_path(self, path, **kwargs):
        from .data.kitti import datasets_root
        from .data.synthetic import synthetic_on_first_use

        depth, width = parse_spec(path[len(PREFIX):])
        data = datasets_root() / "kitti_synthetic"
        synthetic_on_first_use(data)()  # an existing set (of any size) is used as it is
        return str(pretrain_backbone(data, depth, width, log=logger.warning))

    def _open(self, path, mode="r", **kwargs):
        return open(self._get_local_path(path), mode)

    def _isfile(self, path, **kwargs):
        return False  # resolved through get_local_path, as detectron2:// is


def register_pretrained_handler() -> None:
    """Make ``synthetic-pretrained://`` paths loadable by detectron2's checkpointer (idempotent)."""
    from detectron2.utils.file_io import PathManager

    if PREFIX not in PathManager._path_handlers:
        PathManager.register_handler(SyntheticPretrainedHandler())
