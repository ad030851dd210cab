"""pycocotools ``COCOeval`` against faster-coco-eval ``COCOeval_faster``: time and agreement.

Both evaluate the same synthetic COCO-val-sized problem (bbox): by default 5,000 images of
640x480, about 7.3 objects per image over 80 categories (about 1% of them ``iscrowd``), box
sides log-uniform in 8..400 px (35% small, 28% medium, 37% large; COCO val2017: 41/34/24), and a detector that emits ``dets_per_image`` boxes per image: one
jittered box for ~80% of the objects (some with the wrong class), ~10% duplicates, and
low-scored clutter up to the count, as a DETR emits a fixed number of queries.

Run it with ``python -m clock_distill.evaluation.bench_coco [--num-images N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import time

import numpy as np

__all__ = ["make_coco_problem", "bench_coco_eval"]

IMG_W, IMG_H = 640, 480
NUM_CATEGORIES = 80


def make_coco_problem(num_images: int = 5000, dets_per_image: int = 100, seed: int = 0):
    """Synthetic (gt, dets): a COCO instances dict and a list of COCO result dicts.

    gt: ``images`` (ids 1..N), ``annotations`` (bbox [x, y, w, h], area, iscrowd, ids from 1),
    ``categories`` (ids 1..80). dets: ``num_images * dets_per_image`` dicts ``image_id``,
    ``category_id``, ``bbox`` [x, y, w, h], ``score``.
    """
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for img_id in range(1, num_images + 1):
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "width": IMG_W, "height": IMG_H})
        n = int(rng.poisson(7.3))
        side = np.exp(rng.uniform(np.log(8), np.log(400), n))
        aspect = np.exp(rng.normal(0, 0.5, n))
        w = np.clip(side * np.sqrt(aspect), 2, IMG_W)
        h = np.clip(side / np.sqrt(aspect), 2, IMG_H)
        x = rng.uniform(0, IMG_W - w)
        y = rng.uniform(0, IMG_H - h)
        cls = rng.integers(1, NUM_CATEGORIES + 1, n)
        crowd = rng.random(n) < 0.01
        for i in range(n):
            anns.append({
                "id": len(anns) + 1, "image_id": img_id, "category_id": int(cls[i]),
                "bbox": [float(x[i]), float(y[i]), float(w[i]), float(h[i])],
                "area": float(w[i] * h[i]), "iscrowd": int(crowd[i]),
            })
        hit = np.flatnonzero(rng.random(n) < 0.8)
        src = np.concatenate([hit, hit[rng.random(len(hit)) < 0.1]])[:dets_per_image]
        jit = rng.normal(0, 0.08, (len(src), 4)) * np.stack([w[src], h[src], w[src], h[src]], 1)
        det_cls = np.where(rng.random(len(src)) < 0.9, cls[src], rng.integers(1, NUM_CATEGORIES + 1, len(src)))
        det_box = np.stack([x[src], y[src], w[src], h[src]], 1) + jit
        det_box[:, 2:] = np.maximum(det_box[:, 2:], 1.0)
        det_score = rng.uniform(0.3, 1.0, len(src))
        k = dets_per_image - len(src)
        cw, ch = rng.uniform(4, 300, k), rng.uniform(4, 300, k)
        clutter = np.stack([rng.uniform(0, IMG_W - cw), rng.uniform(0, IMG_H - ch), cw, ch], 1)
        boxes = np.concatenate([det_box, clutter])
        classes = np.concatenate([det_cls, rng.integers(1, NUM_CATEGORIES + 1, k)])
        scores = np.concatenate([det_score, rng.uniform(0.0, 0.4, k)])
        for b, c, s in zip(boxes.tolist(), classes.tolist(), scores.tolist()):
            dets.append({"image_id": img_id, "category_id": int(c), "bbox": b, "score": s})
    gt = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c, "name": f"class_{c}"} for c in range(1, NUM_CATEGORIES + 1)],
    }
    return gt, dets


def _run(coco_cls, eval_cls, gt: dict, dets: list) -> tuple[dict, np.ndarray, np.ndarray]:
    """Evaluate with one library. Returns (seconds per phase, stats (12,), precision (T,R,K,A,M))."""
    # Both libraries write ids/areas into the dicts they are given: each gets its own copy,
    # made outside the timed region.
    gt, dets = copy.deepcopy(gt), copy.deepcopy(dets)
    times = {}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        t0 = time.perf_counter()
        coco_gt = coco_cls()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        t1 = time.perf_counter()
        ev = eval_cls(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        t2 = time.perf_counter()
        ev.summarize()
        t3 = time.perf_counter()
    times = {"load_s": t1 - t0, "evaluate_accumulate_s": t2 - t1, "summarize_s": t3 - t2, "total_s": t3 - t0}
    return times, np.asarray(ev.stats[:12], dtype=np.float64), np.asarray(ev.eval["precision"], dtype=np.float64)


def bench_coco_eval(num_images: int = 5000, dets_per_image: int = 100, seed: int = 0) -> dict:
    """Time pycocotools ``COCOeval`` and faster-coco-eval ``COCOeval_faster`` on the same problem.

    Returns a dict: ``problem`` (images, gt, dets counts), ``pycocotools`` and
    ``faster_coco_eval`` (seconds per phase: load = index + loadRes, evaluate_accumulate,
    summarize, total; and ``stats``, the 12 summary numbers), ``speedup`` (total and
    evaluate_accumulate, pycocotools / faster), ``max_abs_stats_diff`` and
    ``max_abs_precision_diff`` (over the whole (T, R, K, A, M) precision array), and
    ``agree_1e-6`` (both differences <= 1e-6).
    """
    from faster_coco_eval import COCO as FasterCOCO
    from faster_coco_eval import COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets = make_coco_problem(num_images, dets_per_image, seed)
    ref_t, ref_stats, ref_prec = _run(COCO, COCOeval, gt, dets)
    fast_t, fast_stats, fast_prec = _run(FasterCOCO, COCOeval_faster, gt, dets)
    if ref_prec.shape != fast_prec.shape:
        raise RuntimeError(f"precision arrays differ in shape: {ref_prec.shape} vs {fast_prec.shape}")
    stats_diff = float(np.max(np.abs(ref_stats - fast_stats)))
    prec_diff = float(np.max(np.abs(ref_prec - fast_prec)))
    return {
        "problem": {"images": num_images, "gt": len(gt["annotations"]), "dets": len(dets), "seed": seed},
        "pycocotools": {**ref_t, "stats": ref_stats.tolist()},
        "faster_coco_eval": {**fast_t, "stats": fast_stats.tolist()},
        "speedup": {
            "total": ref_t["total_s"] / fast_t["total_s"],
            "evaluate_accumulate": ref_t["evaluate_accumulate_s"] / fast_t["evaluate_accumulate_s"],
        },
        "max_abs_stats_diff": stats_diff,
        "max_abs_precision_diff": prec_diff,
        "agree_1e-6": stats_diff <= 1e-6 and prec_diff <= 1e-6,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-images", type=int, default=5000)
    p.add_argument("--dets-per-image", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(json.dumps(bench_coco_eval(args.num_images, args.dets_per_image, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
