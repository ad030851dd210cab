"""The official KITTI 2D-object average precision, as a vectorized numpy function.

:func:`evaluate_kitti` reproduces the 2D ("image", bbox) part of the KITTI devkit's
``cpp/evaluate_object.cpp``; the Python port most people know, ``eval.py`` of
kitti-object-eval-python (vendored by OpenPCDet as
``pcdet/datasets/kitti/kitti_object_eval_python/eval.py``), follows the same rules. Every rule
below was read in those two sources (C++: ``cpp/evaluate_object.cpp`` as vendored by the
repositories ``748811693aB/official_kitti_evaltool`` and ``kl456123/kitti_devkit``; Python:
e.g. ``CVMI-Lab/ST3D``, ``pcdet/datasets/kitti/kitti_object_eval_python/eval.py``). Where the
two disagree, the C++ wins and the comment says so.

The rules, per class and difficulty (``[C++ function]`` names where each one lives):

* Difficulties ``[constants]``: Easy/Moderate/Hard = min box height 40/25/25 px,
  max occlusion 0/1/2, max truncation 0.15/0.30/0.50.
* Ground truth ``[cleanData]``. A GT of the evaluated class is *valid*; Van (for Car) and
  Person_sitting (for Pedestrian) are *neutral*; Cyclist has no neutral class; everything else
  is *unrelated*. Names compare case-insensitively (``strcasecmp``). A GT of the class is
  ignored when ``occluded > max_occ`` or ``truncated > max_trunc`` or ``height <= min_height``
  with ``height = y2 - y1``: the limits are inclusive, but the height must be *strictly*
  above 40 / 25 px. Ignored and neutral GT can absorb a detection (then it is neither TP nor
  FP) but never count as a miss; only valid GT enter the recall denominator.
* DontCare ``[cleanData]``: GT named DontCare (case-insensitive in C++; the Python port compares
  case-sensitively) are regions, never objects.
* Detections ``[cleanData]``: a detection with ``int(|y1 - y2|) < min_height`` is *ignored*
  (the C++ truncates the height to an int; for non-negative heights this is the same as
  ``height < min_height``). This check comes **before** the class check: a too-small
  detection of *any* class, Van or Pedestrian included, is "ignored" for Car and can therefore
  absorb a Car GT. A detection of another class (neutral names included) that is tall enough
  plays no part at all. There is no neutral class on the detection side.
* Overlap ``[imageBoxOverlap]``: plain IoU, ``inter / (area_det + area_gt - inter)`` with no
  ``+1`` on widths; an intersection with ``w <= 0`` or ``h <= 0`` is 0. A match needs
  ``IoU > min_overlap`` (strict), min_overlap Car 0.7, Pedestrian 0.5, Cyclist 0.5.
* Matching ``[computeStatistics]``: GT are visited in file order; each takes one still
  unassigned detection. When collecting TP scores (first pass) it takes the candidate with
  the highest score (first one on ties). When counting TP/FP at a score threshold (second
  pass, detections with ``score < threshold`` removed) it takes the non-ignored candidate
  with the largest IoU (first on ties) or, if there is none, the first ignored (too small)
  candidate. The pair counts as TP only if both the GT and the detection are valid;
  otherwise the detection is just consumed.
* False positives ``[computeStatistics]``: non-ignored, unassigned detections of the class
  above the threshold, minus those lying in a DontCare region. "In a region" is
  ``inter / area_det > min_overlap`` (``imageBoxOverlap(det, dc, 0)``), *not* IoU.
* Thresholds ``[getThresholds]``: the first-pass TP scores, sorted descending, subsampled so
  that recall ``(i+1)/n_gt`` walks through 41 evenly spaced values (at most 41 thresholds).
* Curve ``[eval_class]``: precision ``tp / (tp + fp)`` at each threshold, zero at unused
  positions, then replaced by its running maximum to the right.
* AP: R40 = mean of precision positions 1..40 (recall 0 skipped), R11 = mean of positions
  0, 4, ..., 40 (the 11-point AP of the original devkit); reported in percent
  (``get_mAP_R40`` / ``get_mAP`` of eval.py). The devkit executable itself only writes the
  41-point curves (``stats_*_detection.txt``); the forks that print an AP sum the same
  positions (every 4th / 11, or 1..40 / 40).

A devkit property worth knowing: threshold j sits at curve position j although it stands for
recall ``(i_j + 1) / n_gt``, so with fewer than about 80 valid objects there are fewer than 41
thresholds and even a perfect detector scores below 100 (20 objects: R40 47.5, R11 45.45;
40 objects: R40 97.5). Small (e.g. synthetic) validation sets must be read with this in mind.

API-level notes (the devkit executable works on directories, this function on arrays):

* Every requested class is evaluated. The devkit skips a class that has no detection with
  ``x1 >= 0`` in the whole result set; here such a class gets AP 0, which is what its
  precision curve gives.
* A class with no valid GT in a difficulty gets AP 0 (no TP, hence no threshold), as the
  devkit's curve gives.
* ``tp + fp == 0`` at a threshold (possible only in contrived cases) gives precision NaN in
  both devkits; we keep the C++ semantics (NaN stays at that position, ``max_element``
  skips it elsewhere) and warn.

Annotation layout (one dict per image, the kitti_common/OpenPCDet convention):
``name`` (n,) str, ``truncated`` (n,) float, ``occluded`` (n,) int, ``bbox`` (n, 4) float
``x1, y1, x2, y2`` in pixels, and for detections ``score`` (n,). Other keys are ignored by the
metric. Pass numbers as parsed from text (float64): a float32 ``0.15`` is larger than 0.15.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "CLASS_MIN_OVERLAP",
    "DIFFICULTIES",
    "N_SAMPLE_PTS",
    "evaluate_kitti",
    "objects_to_anno",
    "write_kitti_result_file",
    "save_results_json",
    "format_results_table",
    "to_jsonable",
]

# [constants of evaluate_object.cpp] index 0/1/2 = easy/moderate/hard.
DIFFICULTIES = ("easy", "moderate", "hard")
MIN_HEIGHT = (40, 25, 25)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
# [MIN_OVERLAP, row IMAGE] of evaluate_object.cpp. eval.py also knows Van 0.7,
# Person_sitting 0.5, Truck 0.7; they are accepted for completeness.
CLASS_MIN_OVERLAP = {
    "Car": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5, "Van": 0.7, "Person_sitting": 0.5, "Truck": 0.7,
}
# [cleanData] GT types that are neither TP nor FN for a class (lower case, compared case-insensitively).
NEUTRAL_CLASS = {"car": "van", "pedestrian": "person_sitting"}
N_SAMPLE_PTS = 41
# [computeStatistics] NO_DETECTION: the first pass only accepts scores above it.
NO_DETECTION = -10000000.0
# Pair IoUs are computed in chunks of at most this many (GT, detection) pairs to bound memory.
_PAIR_CHUNK = 2_000_000


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------
def _as_1d(anno: Mapping, key: str, n: int, dtype, where: str) -> np.ndarray:
    if key not in anno:
        raise KeyError(f"{where}: missing key {key!r} (have {sorted(anno)})")
    a = np.asarray(anno[key])
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{where}: {key!r} must have shape ({n},) like 'name', got {a.shape}")
    return a.astype(dtype, copy=False)


def _flatten(annos: Sequence[Mapping], is_det: bool) -> dict:
    """Concatenate per-image annos. Returns arrays over all objects, image-major, file order kept.

    ``img`` (N,) int64 image index, ``names`` (N,) lower-case str, ``bbox`` (N, 4) float64,
    ``truncated``/``occluded`` (GT only), ``score`` (detections only).
    """
    what = "dt_annos" if is_det else "gt_annos"
    names, boxes, imgs, trunc, occ, score = [], [], [], [], [], []
    for i, anno in enumerate(annos):
        where = f"{what}[{i}]"
        if not isinstance(anno, Mapping):
            raise TypeError(f"{where}: expected a dict of arrays, got {type(anno).__name__}")
        if "name" not in anno:
            raise KeyError(f"{where}: missing key 'name' (have {sorted(anno)})")
        name = np.asarray(anno["name"])
        if name.ndim != 1:
            raise ValueError(f"{where}: 'name' must be 1-D, got shape {name.shape}")
        n = name.shape[0]
        if "bbox" not in anno:
            raise KeyError(f"{where}: missing key 'bbox' (have {sorted(anno)})")
        bbox = np.asarray(anno["bbox"], dtype=np.float64)
        if n == 0 and bbox.size == 0:
            bbox = bbox.reshape(0, 4)
        if bbox.shape != (n, 4):
            raise ValueError(f"{where}: 'bbox' must have shape ({n}, 4), got {bbox.shape}")
        names.append(name.astype(str))
        boxes.append(bbox)
        imgs.append(np.full(n, i, dtype=np.int64))
        if is_det:
            s = _as_1d(anno, "score", n, np.float64, where)
            if not np.all(np.isfinite(s)):
                raise ValueError(f"{where}: 'score' has non-finite values")
            score.append(s)
        else:
            trunc.append(_as_1d(anno, "truncated", n, np.float64, where))
            occ.append(_as_1d(anno, "occluded", n, np.float64, where))
    out = {
        "img": np.concatenate(imgs) if imgs else np.zeros(0, np.int64),
        "bbox": np.concatenate(boxes) if boxes else np.zeros((0, 4)),
    }
    all_names = np.concatenate(names) if names else np.zeros(0, dtype=str)
    # Lower-case each distinct name once (there are only a handful) instead of every object.
    uniq, inv = np.unique(all_names, return_inverse=True)
    out["names"] = np.array([u.lower() for u in uniq.tolist()], dtype=object)[inv.reshape(-1)]
    if is_det:
        out["score"] = np.concatenate(score) if score else np.zeros(0)
    else:
        out["truncated"] = np.concatenate(trunc) if trunc else np.zeros(0)
        out["occluded"] = np.concatenate(occ) if occ else np.zeros(0)
    return out


# --------------------------------------------------------------------------------------------
# Overlaps
# --------------------------------------------------------------------------------------------
def _ragged_pairs(a_img: np.ndarray, b_img: np.ndarray, num_images: int):
    """All (a, b) index pairs with a_img[a] == b_img[b], as two int64 arrays, a-major.

    Both inputs must be sorted by image. Yields chunks of at most ``_PAIR_CHUNK`` pairs.
    """
    b_cnt = np.bincount(b_img, minlength=num_images)
    b_start = np.cumsum(b_cnt) - b_cnt
    per_a = b_cnt[a_img]
    cum = np.cumsum(per_a)
    a0 = 0
    while a0 < len(a_img):
        # largest a1 such that pairs of a[a0:a1] fit in one chunk (at least one a per chunk)
        base = cum[a0 - 1] if a0 > 0 else 0
        a1 = int(np.searchsorted(cum, base + _PAIR_CHUNK, side="right"))
        a1 = max(a1, a0 + 1)
        counts = per_a[a0:a1]
        total = int(counts.sum())
        if total:
            pa = np.repeat(np.arange(a0, a1), counts)
            first = np.cumsum(counts) - counts  # position of each a's first pair in the chunk
            within = np.arange(total) - np.repeat(first, counts)
            pb = b_start[a_img[pa]] + within
            yield pa, pb
        a0 = a1


def _intersection(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Intersection area of row-aligned boxes (P, 4); 0 where w <= 0 or h <= 0 [imageBoxOverlap]."""
    w = np.minimum(det[:, 2], gt[:, 2]) - np.maximum(det[:, 0], gt[:, 0])
    h = np.minimum(det[:, 3], gt[:, 3]) - np.maximum(det[:, 1], gt[:, 1])
    return np.where((w > 0) & (h > 0), w * h, 0.0)


def _area(b: np.ndarray) -> np.ndarray:
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------
def _greedy_assign(p_gt: np.ndarray, p_det: np.ndarray, p_rank: np.ndarray, n_gt: int, n_det: int,
                   det_active: np.ndarray | None) -> np.ndarray:
    """Sequential-greedy GT -> detection assignment, batched over images and thresholds.

    Args:
        p_gt: (P,) int64, index of the pair's GT in the list of n_gt candidate GT. Pairs
            must be sorted by (p_gt, preference): within one GT, the candidate the devkit would
            pick when all are available comes first.
        p_det: (P,) int64, compact detection index (0..n_det-1).
        p_rank: (P,) int64, rank of the pair's GT among the candidate GT of its image, in file
            order. GT of equal rank live in different images, so they never compete and can be
            processed together; ranks are processed in order, as the devkit visits GT.
        det_active: (T, n_det) bool or None (= all active, T = 1): detections above each
            threshold.

    Returns:
        (T, n_gt) int64, the detection assigned to each candidate GT per threshold, -1 for none.
    """
    T = 1 if det_active is None else det_active.shape[0]
    chosen = np.full((T, n_gt), -1, dtype=np.int64)
    if not len(p_gt):
        return chosen
    assigned = np.zeros((T, n_det), dtype=bool)
    order = np.argsort(p_rank, kind="stable")  # keeps the (gt, preference) order within a rank
    rank_sorted = p_rank[order]
    bounds = np.flatnonzero(np.diff(rank_sorted)) + 1
    for sl in np.split(order, bounds):
        g = p_gt[sl]
        d = p_det[sl]
        P = len(sl)
        avail = ~assigned[:, d]
        if det_active is not None:
            avail &= det_active[:, d]
        seg = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])  # first pair of each GT
        # first available pair of each GT = the devkit's pick among the available candidates
        first = np.minimum.reduceat(np.where(avail, np.arange(P), P), seg, axis=1)  # (T, G)
        t_idx, s_idx = np.nonzero(first < P)
        pick = first[t_idx, s_idx]
        assigned[t_idx, d[pick]] = True
        chosen[t_idx, g[seg[s_idx]]] = d[pick]
    return chosen


def _gt_ranks(gt_ids: np.ndarray, gt_img: np.ndarray) -> np.ndarray:
    """Rank of each (sorted, unique) GT among those of its image: 0, 1, 2, ... in file order."""
    if not len(gt_ids):
        return np.zeros(0, np.int64)
    img = gt_img[gt_ids]
    start = np.flatnonzero(np.r_[True, img[1:] != img[:-1]])
    return np.arange(len(gt_ids)) - np.repeat(start, np.diff(np.r_[start, len(gt_ids)]))


def _get_thresholds(scores: np.ndarray, n_gt: int) -> np.ndarray:
    """[getThresholds] Scores at which recall steps through 41 evenly spaced values.

    Same floating-point expressions as the devkit (``current_recall`` is accumulated by
    repeated addition of 1/40, not computed as k/40), so ties on the comparison resolve alike.
    """
    v = np.sort(scores)[::-1]
    n = len(v)
    if n == 0:
        return v
    i = np.arange(n)
    l_recall = (i + 1) / float(n_gt)
    r_recall = np.where(i < n - 1, (i + 2) / float(n_gt), l_recall)
    out = []
    current = 0.0
    start = 0
    step = 1.0 / (N_SAMPLE_PTS - 1.0)
    while start < n:
        # the devkit skips i while the next recall is closer to the current target
        skip = ((r_recall[start:] - current) < (current - l_recall[start:])) & (i[start:] < n - 1)
        k = start + int(np.argmin(skip))  # first False; the last index is never skipped
        out.append(v[k])
        current += step
        start = k + 1
    return np.asarray(out)


def _running_max_cpp(prec: np.ndarray, n_used: int) -> np.ndarray:
    """[eval_class] precision[i] = max(precision[i:]) for i < n_used, with std::max_element's NaN behaviour.

    ``max_element`` keeps the first element while nothing compares greater: a NaN at position i
    stays NaN, and NaNs further right are never picked.
    """
    out = prec.copy()
    finite = np.where(np.isnan(prec), -np.inf, prec)
    suffix_max = np.maximum.accumulate(finite[::-1])[::-1]
    head = slice(0, n_used)
    out[head] = np.where(np.isnan(prec[head]), np.nan, suffix_max[head])
    return out


def _ap(prec: np.ndarray) -> tuple[float, float]:
    """(AP_R40, AP_R11) in percent from the 41-point precision curve [get_mAP_R40 / get_mAP]."""
    r40 = 0.0
    for i in range(1, N_SAMPLE_PTS):
        r40 += prec[i]
    r11 = 0.0
    for i in range(0, N_SAMPLE_PTS, 4):
        r11 += prec[i]
    return float(r40 / 40 * 100), float(r11 / 11 * 100)


# --------------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------------
def _eval_class_difficulty(gt: dict, dt: dict, pairs: dict, dc_max: np.ndarray, cls: str,
                           difficulty: int, min_overlap: float) -> dict:
    """One class at one difficulty. Returns precision/recall (41,), thresholds and num_gt."""
    cls_l = cls.lower()
    neutral = NEUTRAL_CLASS.get(cls_l)
    # [cleanData] ground truth: 0 valid, 1 ignored (neutral, or outside the difficulty), -1 unrelated
    gt_is_cls = gt["names"] == cls_l
    gt_is_neutral = (gt["names"] == neutral) if neutral is not None else np.zeros_like(gt_is_cls)
    height = gt["bbox"][:, 3] - gt["bbox"][:, 1]
    outside = ((gt["occluded"] > MAX_OCCLUSION[difficulty])
               | (gt["truncated"] > MAX_TRUNCATION[difficulty])
               | (height <= MIN_HEIGHT[difficulty]))
    ign_gt = np.full(len(gt_is_cls), -1, dtype=np.int8)
    ign_gt[gt_is_neutral | (gt_is_cls & outside)] = 1
    ign_gt[gt_is_cls & ~outside] = 0
    n_gt = int(np.count_nonzero(ign_gt == 0))
    # [cleanData] detections: 1 too small (any class), 0 of the class, -1 other class
    dt_h = np.trunc(np.abs(dt["bbox"][:, 1] - dt["bbox"][:, 3]))
    ign_dt = np.full(len(dt_h), -1, dtype=np.int8)
    ign_dt[dt["names"] == cls_l] = 0
    ign_dt[dt_h < MIN_HEIGHT[difficulty]] = 1
    # [computeStatistics] the DontCare test uses inter / area_det, not IoU
    in_dc = dc_max > min_overlap

    # candidate pairs: GT and detection both take part, and IoU > min_overlap (strict)
    pg, pd, piou = pairs["gt"], pairs["det"], pairs["iou"]
    keep = (ign_gt[pg] != -1) & (ign_dt[pd] != -1) & (piou > min_overlap)
    pg, pd, piou = pg[keep], pd[keep], piou[keep]
    cand_gt, p_u = np.unique(pg, return_inverse=True)  # candidate GT in file order
    cand_dt, p_d = np.unique(pd, return_inverse=True)
    p_rank = _gt_ranks(cand_gt, gt["img"])[p_u]
    score_c = dt["score"][cand_dt]
    ign_dt_c = ign_dt[cand_dt]
    ign_gt_u = ign_gt[cand_gt]

    # First pass [computeStatistics, compute_fp=false]: highest score, first index on ties;
    # scores must beat NO_DETECTION.
    ok = dt["score"][pd] > NO_DETECTION
    sel = np.flatnonzero(ok)
    o = np.lexsort((pd[sel], -dt["score"][pd[sel]], p_u[sel]))
    s1 = sel[o]
    chosen1 = _greedy_assign(p_u[s1], p_d[s1], p_rank[s1], len(cand_gt), len(cand_dt), None)[0]
    got = chosen1 >= 0
    is_tp = got & (ign_gt_u == 0)
    is_tp[got] &= ign_dt_c[chosen1[got]] == 0
    tp_scores = score_c[chosen1[is_tp]]
    thresholds = _get_thresholds(tp_scores, n_gt)
    T = len(thresholds)

    precision = np.zeros(N_SAMPLE_PTS)
    recall = np.zeros(N_SAMPLE_PTS)
    if T:
        # Second pass [computeStatistics, compute_fp=true] at every threshold at once.
        # Preference: valid detections by IoU (largest first), then ignored ones; index breaks ties.
        o = np.lexsort((pd, np.where(ign_dt[pd] == 0, -piou, 0.0), ign_dt[pd], p_u))
        active = score_c[None, :] >= thresholds[:, None]  # (T, Dc): 'score < thresh' is dropped
        # (T, U): the detection each candidate GT takes at each threshold, -1 for none
        chosen = _greedy_assign(p_u[o], p_d[o], p_rank[o], len(cand_gt), len(cand_dt), active)
        got = chosen >= 0
        chosen_safe = np.where(got, chosen, 0)
        det_valid = got & (ign_dt_c[chosen_safe] == 0)
        tp = np.count_nonzero(det_valid & (ign_gt_u == 0)[None, :], axis=1)
        fn = n_gt - np.count_nonzero(got & (ign_gt_u == 0)[None, :], axis=1)
        # FP = valid detections above the threshold, not assigned, not inside DontCare
        fp_pool = np.sort(dt["score"][(ign_dt == 0) & ~in_dc])
        above = len(fp_pool) - np.searchsorted(fp_pool, thresholds, side="left")
        assigned_pool = np.count_nonzero(det_valid & ~in_dc[cand_dt][chosen_safe], axis=1)
        fp = above - assigned_pool
        with np.errstate(invalid="ignore", divide="ignore"):
            prec_t = tp / (tp + fp).astype(np.float64)
            rec_t = tp / (tp + fn).astype(np.float64)
        if np.any(tp + fp == 0):
            warnings.warn(
                f"KITTI eval {cls}/{DIFFICULTIES[difficulty]}: tp + fp == 0 at a score threshold; "
                "precision is NaN there, as in the devkit", RuntimeWarning, stacklevel=3)
        precision[:T] = prec_t
        recall[:T] = rec_t
        precision = _running_max_cpp(precision, T)
    return {"precision": precision, "recall": recall, "thresholds": thresholds, "num_gt": n_gt}


def evaluate_kitti(gt_annos: Sequence[Mapping], dt_annos: Sequence[Mapping],
                   classes: Sequence[str] = ("Car", "Pedestrian", "Cyclist"),
                   return_curves: bool = False):
    """Official KITTI 2D-object AP (devkit ``evaluate_object.cpp``, bbox part).

    Args:
        gt_annos: one dict per image: ``name`` (n,) str, ``truncated`` (n,) float,
            ``occluded`` (n,) int, ``bbox`` (n, 4) x1, y1, x2, y2 pixels. Extra keys are ignored.
        dt_annos: one dict per image, same order: ``name`` (m,), ``bbox`` (m, 4), ``score`` (m,).
        classes: class names to evaluate (case as in KITTI; min IoU from CLASS_MIN_OVERLAP).
        return_curves: also return the precision-recall curves.

    Returns:
        ``{cls: {difficulty: {"AP_R40": float, "AP_R11": float}}, "mAP": {difficulty: {...}}}`` in
        percent, ``mAP`` being the mean over ``classes``. With ``return_curves=True``, a tuple
        ``(results, curves)`` where ``curves[cls][difficulty]`` holds ``precision`` (41,) (the
        devkit curve after its running max, at recall i/40), ``recall`` (41,) (tp / (tp + fn)
        at the same thresholds), ``recall_points`` (41,), ``thresholds`` (k <= 41,) score
        thresholds and ``num_gt`` (valid GT count).
    """
    if len(gt_annos) != len(dt_annos):
        raise ValueError(f"gt_annos has {len(gt_annos)} images but dt_annos has {len(dt_annos)}")
    classes = list(classes)
    if not classes:
        raise ValueError("classes is empty")
    for c in classes:
        if c not in CLASS_MIN_OVERLAP:
            raise ValueError(f"unknown KITTI class {c!r}; known: {', '.join(CLASS_MIN_OVERLAP)}")
    gt = _flatten(gt_annos, is_det=False)
    dt = _flatten(dt_annos, is_det=True)
    n_img = len(gt_annos)

    # Only these objects can take part in matching: GT of an evaluated or neutral class, and
    # detections of an evaluated class or small enough to be "ignored" at some difficulty.
    cls_l = {c.lower() for c in classes}
    gt_names_used = cls_l | {NEUTRAL_CLASS[c] for c in cls_l if c in NEUTRAL_CLASS}
    gt_sel = np.flatnonzero(np.isin(gt["names"], list(gt_names_used)))
    dt_h = np.trunc(np.abs(dt["bbox"][:, 1] - dt["bbox"][:, 3]))
    dt_sel = np.flatnonzero(np.isin(dt["names"], list(cls_l)) | (dt_h < max(MIN_HEIGHT)))
    min_iou = min(CLASS_MIN_OVERLAP[c] for c in classes)
    pg_l, pd_l, piou_l = [], [], []
    for a, b in _ragged_pairs(gt["img"][gt_sel], dt["img"][dt_sel], n_img):
        g, d = gt_sel[a], dt_sel[b]
        gb, db = gt["bbox"][g], dt["bbox"][d]
        inter = _intersection(db, gb)
        hit = inter > 0
        g, d, inter, gb, db = g[hit], d[hit], inter[hit], gb[hit], db[hit]
        # [imageBoxOverlap, criterion -1] det area + gt area - inter, no +1 on widths
        iou = inter / (_area(db) + _area(gb) - inter)
        hit = iou > min_iou
        pg_l.append(g[hit])
        pd_l.append(d[hit])
        piou_l.append(iou[hit])
    pairs = {
        "gt": np.concatenate(pg_l) if pg_l else np.zeros(0, np.int64),
        "det": np.concatenate(pd_l) if pd_l else np.zeros(0, np.int64),
        "iou": np.concatenate(piou_l) if piou_l else np.zeros(0),
    }
    # the pair list is GT-major by construction of _ragged_pairs; keep it sorted by GT
    o = np.lexsort((pairs["det"], pairs["gt"]))
    pairs = {k: v[o] for k, v in pairs.items()}

    # [computeStatistics, criterion 0] largest inter / area_det over the image's DontCare boxes
    dc_max = np.zeros(len(dt["score"]))
    dc_sel = np.flatnonzero(gt["names"] == "dontcare")
    det_all = np.arange(len(dt["score"]))
    for a, b in _ragged_pairs(gt["img"][dc_sel], dt["img"], n_img):
        g, d = dc_sel[a], det_all[b]
        inter = _intersection(dt["bbox"][d], gt["bbox"][g])
        hit = inter > 0
        ratio = inter[hit] / _area(dt["bbox"][d[hit]])
        np.maximum.at(dc_max, d[hit], ratio)

    results: dict = {}
    curves: dict = {}
    for c in classes:
        results[c], curves[c] = {}, {}
        for di, dname in enumerate(DIFFICULTIES):
            cur = _eval_class_difficulty(gt, dt, pairs, dc_max, c, di, CLASS_MIN_OVERLAP[c])
            r40, r11 = _ap(cur["precision"])
            results[c][dname] = {"AP_R40": r40, "AP_R11": r11}
            cur["recall_points"] = np.linspace(0.0, 1.0, N_SAMPLE_PTS)
            curves[c][dname] = cur
    results["mAP"] = {
        d: {m: float(np.mean([results[c][d][m] for c in classes])) for m in ("AP_R40", "AP_R11")}
        for d in DIFFICULTIES
    }
    if return_curves:
        return results, curves
    return results


# --------------------------------------------------------------------------------------------
# Conversions and files
# --------------------------------------------------------------------------------------------
_OBJECT_KEYS = ("type", "truncated", "occluded", "alpha", "bbox", "dimensions", "location", "rotation_y")


def objects_to_anno(objs: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """Per-object dicts (as ``clock_distill.data.kitti.read_kitti_label_file`` returns) -> array dict.

    Each object needs ``type``, ``truncated``, ``occluded``, ``alpha``, ``bbox`` [x1, y1, x2, y2],
    ``dimensions`` [h, w, l] (file order), ``location`` [x, y, z], ``rotation_y``; ``score`` is
    optional but must then be on every object. Returns ``name`` (n,) str, ``truncated`` (n,)
    float64, ``occluded`` (n,) int64, ``alpha`` (n,), ``bbox`` (n, 4), ``dimensions`` (n, 3),
    ``location`` (n, 3), ``rotation_y`` (n,) and ``score`` (n,) when present.
    """
    for i, o in enumerate(objs):
        for k in _OBJECT_KEYS:
            if k not in o:
                raise KeyError(f"object {i}: missing key {k!r} (have {sorted(o)})")
    has_score = [("score" in o) for o in objs]
    if any(has_score) and not all(has_score):
        raise ValueError(f"objects {[i for i, h in enumerate(has_score) if not h]} have no 'score' "
                         "but others do; a file is either labels (15 fields) or results (16)")
    n = len(objs)

    def vec(key, width):
        a = np.array([o[key] for o in objs], dtype=np.float64).reshape(n, width)
        return a

    anno = {
        "name": np.array([str(o["type"]) for o in objs], dtype=str).reshape(n),
        "truncated": vec("truncated", 1).reshape(n),
        "occluded": np.array([int(o["occluded"]) for o in objs], dtype=np.int64).reshape(n),
        "alpha": vec("alpha", 1).reshape(n),
        "bbox": vec("bbox", 4),
        "dimensions": vec("dimensions", 3),
        "location": vec("location", 3),
        "rotation_y": vec("rotation_y", 1).reshape(n),
    }
    if n and all(has_score):
        anno["score"] = vec("score", 1).reshape(n)
    elif n == 0:
        anno["score"] = np.zeros(0)  # an empty file is a valid (empty) result file too
    return anno


def write_kitti_result_file(path: str | os.PathLike, anno: Mapping) -> None:
    """Write one image's detections in the devkit result format (16 fields per line).

    ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry score``. Needs ``name``,
    ``bbox`` (n, 4) and ``score`` (n,). Fields the 2D devkit does not read may be absent and are
    then written with the KITTI "unknown" values: truncated -1, occluded -1, alpha -10
    (disables AOS), dimensions -1, location -1000, rotation_y -10. bbox and the other floats use
    2 decimals like the KITTI labels; the score is written losslessly (``repr``) so that the
    ranking, and hence the AP, survives the round trip. An empty anno writes an empty file.
    """
    path = Path(path)
    if "name" not in anno or "bbox" not in anno or "score" not in anno:
        raise KeyError(f"{path}: anno needs 'name', 'bbox' and 'score' (have {sorted(anno)})")
    name = np.asarray(anno["name"]).astype(str).reshape(-1)
    n = len(name)
    bbox = np.asarray(anno["bbox"], dtype=np.float64).reshape(n, 4)
    score = np.asarray(anno["score"], dtype=np.float64).reshape(n)
    if not np.all(np.isfinite(score)):
        raise ValueError(f"{path}: non-finite detection score")

    def opt(key, width, fill):
        if key not in anno:
            return np.full((n, width), fill, dtype=np.float64)
        return np.asarray(anno[key], dtype=np.float64).reshape(n, width)

    trunc = opt("truncated", 1, -1.0)
    occ = opt("occluded", 1, -1.0)
    alpha = opt("alpha", 1, -10.0)
    dims = opt("dimensions", 3, -1.0)
    loc = opt("location", 3, -1000.0)
    ry = opt("rotation_y", 1, -10.0)
    lines = []
    for i in range(n):
        if not name[i] or any(ch.isspace() for ch in name[i]):
            raise ValueError(f"{path}: object {i}: type {name[i]!r} is empty or has whitespace")
        floats = [*bbox[i], *dims[i], *loc[i], ry[i, 0]]
        lines.append(" ".join([
            name[i], f"{trunc[i, 0]:.2f}", str(int(occ[i, 0])), f"{alpha[i, 0]:.2f}",
            *(f"{v:.2f}" for v in floats), repr(float(score[i])),
        ]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def to_jsonable(x):
    """Nested results/curves (dicts, numpy arrays and scalars) as plain JSON types; NaN -> None."""
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (np.ndarray, list, tuple)):
        return [to_jsonable(v) for v in list(x)]
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    return x


def save_results_json(results: Mapping, path: str | os.PathLike) -> Path:
    """Write :func:`evaluate_kitti` results as indented JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(results), indent=2) + "\n")
    return path


def format_results_table(results: Mapping) -> str:
    """Plain-text table: one row per class (and mAP), Easy/Moderate/Hard for R40 then R11."""
    rows = [k for k in results if k != "mAP"] + (["mAP"] if "mAP" in results else [])
    short = {"easy": "easy", "moderate": "mod", "hard": "hard"}
    cols = [f"{m} {short[d]}" for m in ("R40", "R11") for d in DIFFICULTIES]
    head = f"{'class':<12}" + "".join(f"{c:>12}" for c in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        vals = [results[r][d][f"AP_{m}"] for m in ("R40", "R11") for d in DIFFICULTIES]
        lines.append(f"{r:<12}" + "".join(f"{v:>12.4f}" for v in vals))
    return "\n".join(lines)
