"""A deterministic generator of synthetic scenes in the real KITTI 2D-object layout.

No real KITTI is needed to run, test or demo the project: this writes road scenes with Car,
Pedestrian and Cyclist (plus neutral Van / Person_sitting and DontCare regions), in KITTI's
files and label format, with occlusion and truncation computed from what was drawn.

Geometry follows a pinhole camera over a flat road, as in KITTI: an object of metric height
H at depth z is ``f*H/z`` pixels tall and stands on the road, so far objects are small and
near the horizon, near objects are large, low, and may be cut off at the image border.
Object heights are drawn log-uniformly from 14 to 130 px so that Easy (> 40 px), Moderate
and Hard (> 25 px) and too-small objects all occur.

Default size 640x192: KITTI's 1242x375 halved (3.3:1), rounded to multiples of 32 (the C5
stride), which keeps CPU training fast while objects keep KITTI-like pixel heights for the
official difficulty thresholds.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np

from .kitti import format_kitti_label_line

GENERATOR_VERSION = 1  # bump when a scene for the same (seed, i) changes
DEFAULT_WIDTH, DEFAULT_HEIGHT = 640, 192

# type: (metric height m, (width/height aspect range), sampling weight, (h, w, l) dims in m)
CLASS_SPECS = {
    "Car": (1.52, (1.2, 2.6), 0.45, (1.52, 1.63, 3.88)),
    "Pedestrian": (1.76, (0.30, 0.45), 0.22, (1.76, 0.66, 0.84)),
    "Cyclist": (1.74, (0.55, 1.05), 0.17, (1.74, 0.60, 1.76)),
    "Van": (2.20, (1.0, 1.9), 0.11, (2.20, 1.90, 5.08)),
    "Person_sitting": (1.25, (0.55, 0.75), 0.05, (1.25, 0.60, 0.80)),
}
CAR_COLORS = [(180, 30, 30), (30, 60, 170), (220, 220, 225), (150, 150, 160), (35, 35, 40), (220, 190, 40)]
VAN_COLORS = [(235, 235, 230), (120, 90, 60), (200, 200, 190), (60, 110, 70)]
SHIRT_COLORS = [(200, 40, 40), (40, 140, 60), (240, 200, 60), (60, 60, 200), (230, 120, 30), (150, 40, 160)]
PANTS_COLORS = [(30, 30, 60), (50, 50, 50), (90, 70, 50), (20, 40, 90)]
SKIN_COLORS = [(235, 200, 170), (200, 150, 110), (140, 95, 65)]


def _noise_field(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth value noise in [-1, 1], (h, w): random grid upsampled bilinearly."""
    import cv2

    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    grid = rng.uniform(-1, 1, size=(gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)


def _background(rng: np.random.Generator, h: int, w: int, horizon: int) -> np.ndarray:
    """Textured sky, buildings, trees and road with lane marks and clutter; (h, w, 3) uint8."""
    import cv2

    img = np.zeros((h, w, 3), np.float32)
    sky_top, sky_bot = np.array(rng.choice([(120, 160, 220), (170, 190, 210), (200, 205, 210)])), np.array((225, 230, 235))
    t = np.linspace(0, 1, horizon)[:, None, None]
    img[:horizon] = sky_top * (1 - t) + sky_bot * t
    road = np.array(rng.choice([(95, 95, 100), (115, 112, 108), (80, 82, 85)]), np.float32)
    img[horizon:] = road
    # Buildings and trees along the horizon: the clutter a detector must learn to ignore.
    x = int(rng.integers(-40, 0))
    while x < w:
        bw, bh = int(rng.integers(30, 110)), int(rng.integers(horizon // 3, horizon))
        color = rng.choice([(150, 130, 110), (170, 160, 150), (120, 110, 100), (190, 170, 140)])
        cv2.rectangle(img, (x, horizon - bh), (x + bw, horizon), tuple(float(c) for c in color), -1)
        for wy in range(horizon - bh + 6, horizon - 8, 14):  # windows
            for wx in range(x + 5, x + bw - 8, 12):
                cv2.rectangle(img, (wx, wy), (wx + 5, wy + 6), (70.0, 80.0, 95.0), -1)
        x += bw + int(rng.integers(0, 30))
    for _ in range(int(rng.integers(2, 7))):
        cx, r = int(rng.integers(0, w)), int(rng.integers(8, 26))
        cv2.ellipse(img, (cx, horizon - r), (r, int(r * 1.3)), 0, 0, 360, (50.0, float(rng.integers(90, 140)), 50.0), -1)
    for _ in range(int(rng.integers(1, 4))):  # poles: thin, tall, pedestrian-like distractors
        px = int(rng.integers(0, w))
        cv2.rectangle(img, (px, int(horizon * 0.3)), (px + 2, horizon + int(rng.integers(10, 40))), (60.0, 60.0, 60.0), -1)
    for k in range(3):  # lane marks converge to the vanishing point
        xb = w * (0.15 + 0.35 * k)
        cv2.line(img, (int(w / 2), horizon), (int(xb), h), (230.0, 230.0, 220.0), 2)
    for _ in range(int(rng.integers(2, 6))):  # road patches (oil, shadows)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(horizon + 5, h))
        cv2.ellipse(img, (cx, cy), (int(rng.integers(6, 30)), int(rng.integers(2, 8))), 0, 0, 360,
                    tuple(float(c) for c in road * rng.uniform(0.6, 0.9)), -1)
    img += 18 * _noise_field(rng, h, w, 24)[..., None] + rng.normal(0, 5, size=(h, w, 1))
    return img


def _draw_object(img: np.ndarray, mask: np.ndarray, kind: str, box: tuple, rng: np.random.Generator) -> None:
    """Draw one object into ``img`` (h, w, 3 float) and its silhouette into ``mask`` (h, w uint8).

    ``box`` is the unclipped (x1, y1, x2, y2); drawing outside the image is clipped by cv2.
    Each class has its own shape and colours, so the task is learnable but not trivial.
    """
    import cv2

    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    layers: list[tuple[str, tuple, tuple]] = []  # (shape, geometry, colour)

    def rect(ax1, ay1, ax2, ay2, color):
        layers.append(("rect", (int(x1 + ax1 * bw), int(y1 + ay1 * bh), int(x1 + ax2 * bw), int(y1 + ay2 * bh)), color))

    def circle(ax, ay, ar, color, thickness=-1):
        layers.append(("circle", (int(x1 + ax * bw), int(y1 + ay * bh), max(1, int(ar * bh)), thickness), color))

    if kind in ("Car", "Van"):
        body = CAR_COLORS[rng.integers(len(CAR_COLORS))] if kind == "Car" else VAN_COLORS[rng.integers(len(VAN_COLORS))]
        if kind == "Car":
            rect(0.0, 0.45, 1.0, 0.85, body)
            layers.append(("poly", [(x1 + 0.2 * bw, y1 + 0.45 * bh), (x1 + 0.3 * bw, y1), (x1 + 0.75 * bw, y1),
                                    (x1 + 0.88 * bw, y1 + 0.45 * bh)], body))
            layers.append(("poly", [(x1 + 0.27 * bw, y1 + 0.42 * bh), (x1 + 0.34 * bw, y1 + 0.08 * bh),
                                    (x1 + 0.72 * bw, y1 + 0.08 * bh), (x1 + 0.82 * bw, y1 + 0.42 * bh)], (70, 90, 110)))
        else:
            rect(0.0, 0.0, 1.0, 0.86, body)
            rect(0.72, 0.08, 0.97, 0.40, (60, 75, 95))
            rect(0.05, 0.12, 0.6, 0.3, tuple(int(c * 0.8) for c in body))
        circle(0.2, 0.85, 0.15, (15, 15, 15))
        circle(0.8, 0.85, 0.15, (15, 15, 15))
        circle(0.2, 0.85, 0.06, (170, 170, 170))
        circle(0.8, 0.85, 0.06, (170, 170, 170))
    elif kind in ("Pedestrian", "Person_sitting"):
        shirt, pants = SHIRT_COLORS[rng.integers(len(SHIRT_COLORS))], PANTS_COLORS[rng.integers(len(PANTS_COLORS))]
        skin = SKIN_COLORS[rng.integers(len(SKIN_COLORS))]
        if kind == "Pedestrian":
            stride = rng.uniform(0.0, 0.2)
            rect(0.3 - stride, 0.55, 0.48, 1.0, pants)
            rect(0.52, 0.55, 0.7 + stride, 1.0, pants)
            rect(0.2, 0.16, 0.8, 0.58, shirt)
            rect(0.05, 0.18, 0.2, 0.5, shirt)
            rect(0.8, 0.18, 0.95, 0.5, shirt)
            circle(0.5, 0.08, 0.075, skin)
        else:
            rect(0.25, 0.25, 0.75, 0.7, shirt)
            rect(0.25, 0.62, 1.0, 0.8, pants)
            rect(0.82, 0.62, 1.0, 1.0, pants)
            circle(0.5, 0.13, 0.11, skin)
    elif kind == "Cyclist":
        shirt = SHIRT_COLORS[rng.integers(len(SHIRT_COLORS))]
        circle(0.22, 0.77, 0.22, (20, 20, 20), max(1, int(0.04 * bh)))
        circle(0.78, 0.77, 0.22, (20, 20, 20), max(1, int(0.04 * bh)))
        frame = (40, 90, 200)
        layers.append(("line", (x1 + 0.22 * bw, y1 + 0.77 * bh, x1 + 0.5 * bw, y1 + 0.55 * bh, max(1, int(0.03 * bh))), frame))
        layers.append(("line", (x1 + 0.5 * bw, y1 + 0.55 * bh, x1 + 0.78 * bw, y1 + 0.77 * bh, max(1, int(0.03 * bh))), frame))
        rect(0.35, 0.15, 0.62, 0.52, shirt)
        rect(0.45, 0.45, 0.6, 0.75, (30, 30, 60))
        circle(0.5, 0.08, 0.075, SKIN_COLORS[rng.integers(len(SKIN_COLORS))])
    else:
        raise ValueError(f"no drawing for object type {kind!r}")

    shade = rng.uniform(0.8, 1.15)
    for shape, geo, color in layers:
        c = tuple(float(min(255, v * shade)) for v in color)
        for target, value in ((img, c), (mask, 1)):
            if shape == "rect":
                cv2.rectangle(target, geo[:2], geo[2:], value, -1)
            elif shape == "circle":
                cv2.circle(target, geo[:2], geo[2], value, geo[3], lineType=cv2.LINE_8)
            elif shape == "poly":
                cv2.fillPoly(target, [np.round(np.array(geo)).astype(np.int32)], value)
            elif shape == "line":
                cv2.line(target, (int(geo[0]), int(geo[1])), (int(geo[2]), int(geo[3])), value, int(geo[4]))


def _occlusion_level(visible: float) -> int:
    """KITTI occlusion state from the visible fraction of the drawn silhouette."""
    if visible >= 0.9:
        return 0  # fully visible
    if visible >= 0.5:
        return 1  # partly occluded
    if visible >= 0.15:
        return 2  # largely occluded
    return 3  # unknown (barely visible)


def generate_scene(rng: np.random.Generator, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT):
    """One scene: returns (image (H, W, 3) uint8 RGB, list of KITTI object dicts)."""
    import cv2

    horizon = int(height * rng.uniform(0.36, 0.44))
    focal = 0.58 * width  # KITTI: f ~ 721 px at 1242 px wide
    cam_h = 1.65
    img = _background(rng, height, width, horizon)
    types = list(CLASS_SPECS)
    weights = np.array([CLASS_SPECS[t][2] for t in types])
    num = 0 if rng.random() < 0.04 else int(rng.integers(2, 10))
    placed = []
    for _ in range(num):
        kind = types[rng.choice(len(types), p=weights / weights.sum())]
        metric_h, (amin, amax), _, dims = CLASS_SPECS[kind]
        h_px = math.exp(rng.uniform(math.log(14), math.log(130)))
        z = focal * metric_h / h_px
        bottom = horizon + focal * cam_h / z
        w_px = h_px * rng.uniform(amin, amax)
        cx = rng.uniform(-0.1 * width, 1.1 * width)
        box = (cx - w_px / 2, bottom - h_px, cx + w_px / 2, bottom)
        cb = (max(0.0, box[0]), max(0.0, box[1]), min(width - 1.0, box[2]), min(height - 1.0, box[3]))
        if cb[2] - cb[0] < 4 or cb[3] - cb[1] < 4:
            continue  # almost entirely out of view: KITTI would not label it
        placed.append((z, kind, box, cb, dims, focal))

    # Far to near: nearer objects are drawn later and occlude farther ones.
    placed.sort(key=lambda p: -p[0])
    owner = np.full((height, width), -1, np.int32)
    areas = []
    for idx, (_, kind, box, _, _, _) in enumerate(placed):
        mask = np.zeros((height, width), np.uint8)
        _draw_object(img, mask, kind, box, rng)
        owner[mask > 0] = idx
        areas.append(int(mask.sum()))
    visible = np.bincount(owner[owner >= 0], minlength=len(placed)) if placed else np.zeros(0, int)

    objects = []
    for idx, (z, kind, box, cb, dims, f) in enumerate(placed):
        full_area = (box[2] - box[0]) * (box[3] - box[1])
        clipped_area = (cb[2] - cb[0]) * (cb[3] - cb[1])
        cx = (box[0] + box[2]) / 2
        x3d = (cx - width / 2) * z / f
        ry = float(rng.uniform(-math.pi, math.pi))
        alpha = (ry - math.atan2(x3d, z) + math.pi) % (2 * math.pi) - math.pi
        objects.append(
            {
                "type": kind,
                "truncated": float(np.clip(1 - clipped_area / full_area, 0, 1)),
                "occluded": _occlusion_level(visible[idx] / max(areas[idx], 1)),
                "alpha": alpha,
                "bbox": [round(v, 2) for v in cb],
                "dimensions": list(dims),
                "location": [x3d, 1.65, z],
                "rotation_y": ry,
            }
        )

    # DontCare: a far cluster of small, unlabelled road users, as KITTI marks them.
    for _ in range(int(rng.integers(0, 3))):
        rw, rh = rng.uniform(30, 80), rng.uniform(10, 18)
        rx, ry0 = rng.uniform(0, width - rw), horizon - rh * rng.uniform(0.6, 0.9)
        for _ in range(int(rng.integers(2, 5))):
            sh = rng.uniform(6, rh)
            kind = ("Car", "Pedestrian")[int(rng.integers(2))]
            sw = sh * (1.8 if kind == "Car" else 0.4)
            sx = rng.uniform(rx, rx + rw - sw)
            sb = ry0 + rh
            _draw_object(img, np.zeros((height, width), np.uint8), kind, (sx, sb - sh, sx + sw, sb), rng)
        objects.append(
            {
                "type": "DontCare", "truncated": -1.0, "occluded": -1, "alpha": -10.0,
                "bbox": [round(rx, 2), round(ry0, 2), round(rx + rw, 2), round(ry0 + rh, 2)],
                "dimensions": [-1.0, -1.0, -1.0], "location": [-1000.0, -1000.0, -1000.0], "rotation_y": -10.0,
            }
        )
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    return np.clip(img, 0, 255).astype(np.uint8), objects


# The standard synthetic set: ``train`` to train on, ``tune`` for every choice that is tuned,
# ``val`` reported and never tuned on. 400 val images hold >= 100 Moderate objects of each class
# (Cyclist is the rarest, ~0.3 per image), so the devkit's 41-point recall grid does not cap AP.
STANDARD_SPLITS = {"train": 1000, "tune": 200, "val": 400}


def generate_synthetic_kitti(
    out: str | Path,
    num_images: Optional[int] = None,
    seed: int = 0,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    val_every: int = 5,
    splits: Optional[Mapping[str, int]] = None,
) -> dict:
    """Write a synthetic KITTI root at ``out`` and return its manifest.

    Image ``i`` depends only on (seed, i). Two layouts:
    - ``splits`` (default :data:`STANDARD_SPLITS` when ``num_images`` is None): consecutive blocks
      of image ids, one ``ImageSets/{split}.txt`` per entry, in the given order;
    - ``num_images``: every ``val_every``-th image goes to ``val.txt``, the rest to ``train.txt``
      (the first N images are then the same for any ``num_images`` >= N).
    ``synthetic.json`` records the arguments.
    """
    import cv2

    if num_images is not None and splits is not None:
        raise ValueError("give num_images (train/val by val_every) or splits, not both")
    if num_images is None and splits is None:
        splits = STANDARD_SPLITS
    if splits is not None:
        bad = {k: v for k, v in splits.items() if not isinstance(v, int) or v < 1}
        if bad or not splits:
            raise ValueError(f"splits must map split names to image counts >= 1, got {dict(splits)}")
        total = sum(splits.values())
        assign = [name for name, n in splits.items() for _ in range(n)]
    else:
        if num_images < 2:
            raise ValueError(f"num_images must be >= 2 (one train and one val image), got {num_images}")
        total = num_images
        assign = ["val" if i % val_every == val_every - 1 else "train" for i in range(total)]
    if width < 64 or height < 32:
        raise ValueError(f"image size {width}x{height} is too small; use at least 64x32")
    out = Path(out)
    img_dir, lbl_dir, sets = out / "training" / "image_2", out / "training" / "label_2", out / "ImageSets"
    for d in (img_dir, lbl_dir, sets):
        d.mkdir(parents=True, exist_ok=True)
    members: Dict[str, List[str]] = {name: [] for name in dict.fromkeys(assign)}
    for i in range(total):
        image_id = f"{i:06d}"
        rng = np.random.default_rng([seed, i])
        image, objects = generate_scene(rng, width, height)
        cv2.imwrite(str(img_dir / f"{image_id}.png"), image[:, :, ::-1])
        (lbl_dir / f"{image_id}.txt").write_text("".join(format_kitti_label_line(o) + "\n" for o in objects))
        members[assign[i]].append(image_id)
    for name, ids in members.items():
        (sets / f"{name}.txt").write_text("\n".join(ids) + "\n")
    (sets / "trainval.txt").write_text("\n".join(sorted(members.get("train", []) + members.get("val", []))) + "\n")
    manifest = synthetic_manifest(num_images, seed, width, height, val_every, splits)
    # Written last: a manifest means the set is complete (ensure_synthetic_kitti relies on it).
    (out / "synthetic.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def synthetic_manifest(num_images, seed, width, height, val_every, splits) -> dict:
    """What ``synthetic.json`` holds for these arguments (compared to decide reuse)."""
    m = {"generator_version": GENERATOR_VERSION, "seed": seed, "width": width, "height": height}
    if splits is not None:
        m["splits"] = dict(splits)
    else:
        m.update(num_images=num_images, val_every=val_every)
    return m


def ensure_synthetic_kitti(
    out: str | Path,
    seed: int = 0,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    splits: Optional[Mapping[str, int]] = None,
    num_images: Optional[int] = None,
    log=print,
) -> bool:
    """Generate the set at ``out`` unless ``synthetic.json`` there records the same arguments.
    Returns True if it generated. Deterministic, so regenerating gives the same files."""
    if num_images is None and splits is None:
        splits = STANDARD_SPLITS
    out = Path(out)
    wanted = synthetic_manifest(num_images, seed, width, height, 5, splits)
    manifest = out / "synthetic.json"
    if manifest.exists():
        have = json.loads(manifest.read_text())
        if have == wanted:
            return False
        log(f"{manifest} was made with {have}; regenerating with {wanted}")
    t0 = time.perf_counter()
    n = sum(splits.values()) if splits is not None else num_images
    log(f"generating the synthetic KITTI set at {out} ({n} images, {wanted}) ...")
    generate_synthetic_kitti(out, num_images, seed, width, height, splits=splits)
    log(f"wrote {n} synthetic KITTI images to {out} in {time.perf_counter() - t0:.1f} s")
    return True


def synthetic_on_first_use(root: str | Path):
    """A ``prepare`` callable for :func:`register_kitti`: the first load of a split under an
    empty ``root`` generates the standard set there (logged). A root that already holds a KITTI
    layout (a generated set of any size, or real data) is used as it is."""
    root = Path(root)

    def prepare():
        if not (root / "synthetic.json").exists() and not (root / "training").exists():
            import logging

            ensure_synthetic_kitti(root, log=logging.getLogger("clock_distill.data").warning)

    return prepare
