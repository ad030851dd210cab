"""Timing of :func:`clock_distill.evaluation.kitti.evaluate_kitti` at KITTI-val scale.

The data are synthetic but shaped like KITTI val (3,769 images): about 7 labelled objects per
image with the real class mix (Car, Van, Pedestrian, Person_sitting, Cyclist, Truck, DontCare),
truncation/occlusion levels, and a detector that finds most objects (with some duplicates) and
pads every image to ``dets_per_image`` boxes with low-scored clutter, as a DETR emits a fixed
number of queries.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .kitti import evaluate_kitti

__all__ = ["make_benchmark_annos", "bench_kitti_eval"]

IMG_W, IMG_H = 1242.0, 375.0
# Roughly the share of each type among KITTI training labels.
_GT_TYPES = np.array(["Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "DontCare"])
_GT_P = np.array([0.55, 0.06, 0.02, 0.09, 0.01, 0.03, 0.24])
_DT_TYPES = np.array(["Car", "Pedestrian", "Cyclist"])


def make_benchmark_annos(num_images: int = 3769, dets_per_image: int = 100, seed: int = 0):
    """Synthetic (gt_annos, dt_annos) lists in the evaluate_kitti layout; see the module doc."""
    rng = np.random.default_rng(seed)
    gt_annos, dt_annos = [], []
    for _ in range(num_images):
        n = int(rng.poisson(7))
        names = rng.choice(_GT_TYPES, size=n, p=_GT_P)
        h = np.clip(rng.lognormal(np.log(45), 0.6, n), 8, 300)
        w = h * np.where(np.isin(names, ["Pedestrian", "Person_sitting", "Cyclist"]), 0.45, 1.6)
        x1 = rng.random(n) * np.maximum(IMG_W - w, 0)
        y1 = rng.random(n) * np.maximum(IMG_H - h, 0)
        gt_box = np.stack([x1, y1, x1 + w, y1 + h], axis=1).round(2)
        gt_annos.append({
            "name": names,
            "truncated": rng.choice([0.0, 0.0, 0.0, 0.1, 0.2, 0.4, 0.7], size=n),
            "occluded": rng.choice([0, 0, 1, 2, 3], size=n),
            "bbox": gt_box,
        })
        # one detection for ~85% of the objects (class kept, Van reported as Car), ~15% duplicated
        obj = np.flatnonzero(~np.isin(names, ["DontCare", "Truck"]) & (rng.random(n) < 0.85))
        dup = obj[rng.random(len(obj)) < 0.15]
        src = np.concatenate([obj, dup])
        bw, bh = gt_box[src, 2] - gt_box[src, 0], gt_box[src, 3] - gt_box[src, 1]
        jitter = rng.normal(0, 0.06, (len(src), 4)) * np.stack([bw, bh, bw, bh], axis=1)
        hit_box = gt_box[src] + jitter
        hit_name = names[src].astype("<U14")
        hit_name[hit_name == "Van"] = "Car"
        hit_name[hit_name == "Person_sitting"] = "Pedestrian"
        hit_score = np.where(np.arange(len(src)) < len(obj), rng.uniform(0.4, 1.0, len(src)),
                             rng.uniform(0.05, 0.6, len(src)))
        k = max(dets_per_image - len(src), 0)
        ch = np.clip(rng.lognormal(np.log(35), 0.7, k), 5, 300)
        cw = ch * rng.uniform(0.4, 2.0, k)
        cx = rng.random(k) * np.maximum(IMG_W - cw, 0)
        cy = rng.random(k) * np.maximum(IMG_H - ch, 0)
        clutter = np.stack([cx, cy, cx + cw, cy + ch], axis=1)
        box = np.concatenate([hit_box, clutter])[:dets_per_image]
        name = np.concatenate([hit_name, rng.choice(_DT_TYPES, size=k)])[:dets_per_image]
        score = np.concatenate([hit_score, rng.uniform(0, 0.3, k) ** 2])[:dets_per_image]
        order = np.argsort(-score, kind="stable")  # detectors emit boxes by descending score
        dt_annos.append({"name": name[order], "bbox": box[order], "score": score[order]})
    return gt_annos, dt_annos


def bench_kitti_eval(num_images: int = 3769, dets_per_image: int = 100, seed: int = 0,
                     repeats: int = 3) -> dict:
    """Time evaluate_kitti on synthetic KITTI-val-sized data.

    Returns a dict: ``num_images``, ``dets_per_image``, ``num_gt``, ``num_dets``, ``repeats``,
    ``seconds_min`` / ``seconds_median`` (whole evaluate_kitti call, 3 classes x 3 difficulties,
    R40 and R11), ``images_per_second`` (from the min), ``cpu_count``, ``generate_seconds``
    and ``car_moderate_AP_R40`` (so that a run which evaluates nothing is visible).
    """
    t0 = time.perf_counter()
    gt, dt = make_benchmark_annos(num_images, dets_per_image, seed)
    gen_s = time.perf_counter() - t0
    times = []
    res = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        res = evaluate_kitti(gt, dt)
        times.append(time.perf_counter() - t0)
    return {
        "num_images": num_images,
        "dets_per_image": dets_per_image,
        "num_gt": int(sum(len(a["name"]) for a in gt)),
        "num_dets": int(sum(len(a["name"]) for a in dt)),
        "repeats": len(times),
        "seconds_min": min(times),
        "seconds_median": float(np.median(times)),
        "images_per_second": num_images / min(times),
        "cpu_count": os.cpu_count(),
        "generate_seconds": gen_s,
        "car_moderate_AP_R40": res["Car"]["moderate"]["AP_R40"],
    }


if __name__ == "__main__":  # python -m clock_distill.evaluation.bench_kitti
    import json

    print(json.dumps(bench_kitti_eval(), indent=2))
