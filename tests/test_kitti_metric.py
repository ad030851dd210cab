"""KITTI 2D AP (clock_distill.evaluation.kitti): hand-computed cases, devkit quirks, and a
randomized cross-check against a deliberately naive, loop-based reference written from the
devkit rules (cpp/evaluate_object.cpp: cleanData, computeStatistics, getThresholds, eval_class).

How the devkit turns detections into AP, needed to follow the hand computations:
  * the TP scores of a first matching pass are sorted and subsampled into at most 41 score
    thresholds: with n_gt valid objects, score number i (0-based) gives recall (i+1)/n_gt and is
    kept when that is the best approximation of the next recall step k/40;
  * precision at threshold j sits at curve position j, positions past the last threshold are 0,
    and each position takes the max of the positions to its right;
  * AP_R40 = mean of positions 1..40, AP_R11 = mean of positions 0, 4, ..., 40 (percent).
So with n_gt = 80 objects all found, 41 thresholds exist (scores 0, 1, 3, 5, ..., 79) and AP is
100; with fewer than ~80 valid objects the curve is shorter than 41 points and AP < 100 even
for a perfect detector (see test_perfect_detector_needs_enough_objects).
"""

import math
import os
import sys
import warnings

import numpy as np
import pytest

from clock_distill.evaluation.kitti import (
    evaluate_kitti,
    format_results_table,
    objects_to_anno,
    save_results_json,
    write_kitti_result_file,
)

DIFFS = ("easy", "moderate", "hard")
CLASSES = ("Car", "Pedestrian", "Cyclist")
# one easy-sized box per class, far apart so that they never overlap
BOX = {"Car": [100.0, 100.0, 200.0, 150.0], "Pedestrian": [400.0, 100.0, 430.0, 160.0],
       "Cyclist": [600.0, 100.0, 640.0, 150.0]}


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def gt_anno(objs):
    """objs: list of (name, box, truncated, occluded)."""
    return {
        "name": np.array([o[0] for o in objs], dtype=str),
        "bbox": np.array([o[1] for o in objs], dtype=np.float64).reshape(-1, 4),
        "truncated": np.array([o[2] for o in objs], dtype=np.float64),
        "occluded": np.array([o[3] for o in objs], dtype=np.int64),
    }


def dt_anno(objs):
    """objs: list of (name, box, score)."""
    return {
        "name": np.array([o[0] for o in objs], dtype=str),
        "bbox": np.array([o[1] for o in objs], dtype=np.float64).reshape(-1, 4),
        "score": np.array([o[2] for o in objs], dtype=np.float64),
    }


def score(k):
    """Distinct score of image k: 0.90, 0.89, ..., exact decimal fractions."""
    return (90 - k) / 100


def base_set(n=80, classes=("Car",)):
    """n images, each with one easy object per class, each found exactly (score(k))."""
    gts = [[(c, BOX[c], 0.0, 0) for c in classes] for _ in range(n)]
    dts = [[(c, BOX[c], score(k)) for c in classes] for k in range(n)]
    return gts, dts


def run(gts, dts, **kw):
    return evaluate_kitti([gt_anno(g) for g in gts], [dt_anno(d) for d in dts], **kw)


def assert_ap(res, cls, diff, r40, r11, tol=1e-9):
    got = res[cls][diff]
    assert got["AP_R40"] == pytest.approx(r40, abs=tol), (cls, diff, got)
    assert got["AP_R11"] == pytest.approx(r11, abs=tol), (cls, diff, got)


# AP of the 80-image Car set when one FP outranks every TP: precision at threshold j is
# tp/(tp+1) with tp = 1, 2, 4, 6, ..., 80; its running max to the right is 80/81 everywhere.
ONE_TOP_FP = 100 * 80 / 81


# ------------------------------------------------------------------------------------------
# hand-made cases
# ------------------------------------------------------------------------------------------
def test_perfect_detector_is_100():
    gts, dts = base_set(80, CLASSES)
    res, curves = run(gts, dts, return_curves=True)
    for c in CLASSES:
        for d in DIFFS:
            assert_ap(res, c, d, 100.0, 100.0)
            assert len(curves[c][d]["thresholds"]) == 41
            assert curves[c][d]["num_gt"] == 80
            np.testing.assert_array_equal(curves[c][d]["precision"], np.ones(41))
    for d in DIFFS:
        assert_ap(res, "mAP", d, 100.0, 100.0)


def test_perfect_detector_needs_enough_objects():
    # 20 objects: one threshold per TP (recall steps 1/20 > 1/40), positions 0..19 = 1.
    # R40 = 19/40, R11 = positions 0, 4, 8, 12, 16 = 5/11.
    res = run(*base_set(20))
    assert_ap(res, "Car", "easy", 100 * 19 / 40, 100 * 5 / 11)
    # 40 objects: 40 thresholds, positions 0..39 = 1, position 40 = 0.
    res = run(*base_set(40))
    assert_ap(res, "Car", "moderate", 100 * 39 / 40, 100 * 10 / 11)


def test_duplicate_detection_is_false_positive():
    gts, dts = base_set(80)
    # image 0 (its object has the top score 0.90): a second, shifted box on the same car.
    # Thresholds are the TP scores of images 0, 1, 3, 5, ..., 79, i.e. t_j = score(i_j) with
    # i_0 = 0 and i_j = 2j - 1. The duplicate (0.505) is above t_j from j = 21 on
    # (score(41) = 0.49), where the car keeps its exact box (IoU 1 > 0.9) and the duplicate
    # is a FP: precision = 2j / (2j + 1), whose running max is 80/81. Positions 0..20 are 1.
    dup = [105.0, 100.0, 205.0, 150.0]
    dts[0].append(("Car", dup, 0.505))
    res = run(gts, dts)
    p = np.array([1.0] * 21 + [80 / 81] * 20)
    assert_ap(res, "Car", "easy", 100 * p[1:].mean(), 100 * p[::4].mean())
    assert res["Car"]["easy"]["AP_R40"] == pytest.approx(100 * (20 + 20 * 80 / 81) / 40)
    # A duplicate scored below every threshold (lowest TP score is 0.11) never counts.
    gts, dts = base_set(80)
    dts[0].append(("Car", dup, 0.05))
    assert_ap(run(gts, dts), "Car", "easy", 100.0, 100.0)


def test_detection_in_dontcare_region_is_ignored():
    fp_box = [300.0, 100.0, 400.0, 150.0]  # a car-sized box where there is no car
    gts, dts = base_set(80)
    dts[0].append(("Car", fp_box, 0.95))
    assert_ap(run(gts, dts), "Car", "easy", ONE_TOP_FP, ONE_TOP_FP)  # a plain FP first
    # A large DontCare region containing it. IoU is only 5000 / 135000, but the devkit tests
    # inter / area(detection) = 1 > 0.7: the detection is ignored.
    region = [250.0, 0.0, 700.0, 300.0]
    gts[0].append(("DontCare", region, -1.0, -1))
    assert_ap(run(gts, dts), "Car", "easy", 100.0, 100.0)
    # A region covering 60 % of the detection (not > 0.7 for Car): still a FP.
    gts[0][-1] = ("DontCare", [340.0, 0.0, 700.0, 300.0], -1.0, -1)
    assert_ap(run(gts, dts), "Car", "easy", ONE_TOP_FP, ONE_TOP_FP)
    # For Pedestrian (0.5) the same 60 % coverage is enough.
    gts, dts = base_set(80, ("Pedestrian",))
    dts[0].append(("Pedestrian", [300.0, 100.0, 330.0, 160.0], 0.95))
    gts[0].append(("DontCare", [312.0, 0.0, 700.0, 300.0], -1.0, -1))
    assert_ap(run(gts, dts, classes=("Pedestrian",)), "Pedestrian", "easy", 100.0, 100.0)


def test_equal_iou_tie_goes_to_the_first_detection():
    # Image 0's car gets two mirror-image boxes with exactly equal IoU (4750 / 5250); only the
    # second lies in a DontCare region (75 % of it; the first: 65 %). When both are above the
    # threshold, the devkit keeps the first (strict '>' while scanning), so the second is
    # ignored in the DontCare region and nothing is a FP. (At threshold 0.95 only the second
    # is alive and is the TP.) Picking the second would leave the first as a FP.
    gts, dts = base_set(80)
    dts[0] = [("Car", [95.0, 100.0, 195.0, 150.0], 0.9), ("Car", [105.0, 100.0, 205.0, 150.0], 0.95)]
    gts[0].append(("DontCare", [130.0, 0.0, 400.0, 300.0], -1.0, -1))
    assert_ap(run(gts, dts), "Car", "easy", 100.0, 100.0)
    dts[0].reverse()  # now the box outside the region comes second and is the FP
    res = run(gts, dts)
    assert res["Car"]["easy"]["AP_R40"] < 99.9


def test_hard_only_object_does_not_count_at_easy():
    gts, dts = base_set(80)
    for g in gts:  # an undetected, heavily occluded (level 2) car in every image: Hard only
        g.append(("Car", [300.0, 100.0, 380.0, 150.0], 0.0, 2))
    res = run(gts, dts)
    assert_ap(res, "Car", "easy", 100.0, 100.0)
    assert_ap(res, "Car", "moderate", 100.0, 100.0)
    # Hard: n_gt = 160, 80 TP. Score i gives recall (i+1)/160, kept for i = 0, 3, 7, ..., 75,
    # 79 (i >= 4j - 1.5): 21 thresholds, precision 1 at positions 0..20, 0 after.
    assert_ap(res, "Car", "hard", 100 * 20 / 40, 100 * 6 / 11)


def test_van_detected_as_car_is_not_false_positive():
    van_box = [300.0, 100.0, 400.0, 150.0]
    gts, dts = base_set(80)
    gts[0].insert(0, ("Van", van_box, 0.0, 0))
    dts[0].append(("Car", van_box, 0.95))
    res = run(gts, dts)
    for d in DIFFS:
        assert_ap(res, "Car", d, 100.0, 100.0)
    # The same detection on a Truck (not a neutral class of Car) is a FP.
    gts[0][0] = ("Truck", van_box, 0.0, 0)
    res = run(gts, dts)
    assert_ap(res, "Car", "easy", ONE_TOP_FP, ONE_TOP_FP)
    # Person_sitting is neutral for Pedestrian.
    gts, dts = base_set(80, ("Pedestrian",))
    gts[0].append(("Person_sitting", [300.0, 100.0, 330.0, 160.0], 0.0, 0))
    dts[0].append(("Pedestrian", [300.0, 100.0, 330.0, 160.0], 0.95))
    assert_ap(run(gts, dts, classes=("Pedestrian",)), "Pedestrian", "moderate", 100.0, 100.0)


def test_detection_below_min_height_is_ignored():
    gts, dts = base_set(80)
    dts[0].append(("Car", [300.0, 100.0, 360.0, 130.0], 0.95))  # 30 px tall, on nothing
    res = run(gts, dts)
    assert_ap(res, "Car", "easy", 100.0, 100.0)  # 30 < 40: ignored
    assert_ap(res, "Car", "moderate", ONE_TOP_FP, ONE_TOP_FP)  # 30 >= 25: a FP
    assert_ap(res, "Car", "hard", ONE_TOP_FP, ONE_TOP_FP)
    # the devkit truncates the height to an int: 39.99 px is still too small for Easy
    gts, dts = base_set(80)
    dts[0].append(("Car", [300.0, 100.0, 360.0, 139.99], 0.95))
    assert_ap(run(gts, dts), "Car", "easy", 100.0, 100.0)


def test_empty_images():
    empty_g, empty_d = gt_anno([]), dt_anno([])
    res = evaluate_kitti([empty_g] * 3, [empty_d] * 3)
    for c in (*CLASSES, "mAP"):
        for d in DIFFS:
            assert_ap(res, c, d, 0.0, 0.0)
    res = evaluate_kitti([], [])
    assert_ap(res, "Car", "easy", 0.0, 0.0)
    # empty images around a perfect set change nothing ...
    gts, dts = base_set(80)
    res = run(gts + [[]] * 10, dts + [[]] * 10)
    assert_ap(res, "Car", "hard", 100.0, 100.0)
    # ... but a detection on an image without labels is a FP
    res = run(gts + [[]], dts + [[("Car", [0.0, 0.0, 100.0, 60.0], 0.95)]])
    assert_ap(res, "Car", "hard", ONE_TOP_FP, ONE_TOP_FP)


def test_class_without_ground_truth_scores_zero():
    gts, dts = base_set(80)
    dts[1].append(("Pedestrian", BOX["Pedestrian"], 0.5))  # detections but no labels
    res = run(gts, dts)
    for d in DIFFS:
        assert_ap(res, "Car", d, 100.0, 100.0)
        assert_ap(res, "Pedestrian", d, 0.0, 0.0)
        assert_ap(res, "Cyclist", d, 0.0, 0.0)
        assert_ap(res, "mAP", d, 100 / 3, 100 / 3)
    res = run(gts, dts, classes=("Car",))
    assert set(res) == {"Car", "mAP"}
    assert_ap(res, "mAP", "easy", 100.0, 100.0)


def test_boundaries_follow_the_devkit_comparisons():
    # GT height exactly 40 px: ignored at Easy (height <= 40), valid at Moderate.
    gts = [[("Car", [100.0, 100.0, 200.0, 140.0], 0.0, 0)] for _ in range(80)]
    dts = [[("Car", [100.0, 100.0, 200.0, 140.0], score(k))] for k in range(80)]
    res = run(gts, dts)
    assert_ap(res, "Car", "easy", 0.0, 0.0)
    assert_ap(res, "Car", "moderate", 100.0, 100.0)
    # truncation exactly 0.15 and occlusion exactly 0 are still Easy (>, not >=)
    gts = [[("Car", BOX["Car"], 0.15, 0)] for _ in range(80)]
    res = run(gts, base_set(80)[1])
    assert_ap(res, "Car", "easy", 100.0, 100.0)
    gts = [[("Car", BOX["Car"], 0.16, 0)] for _ in range(80)]
    assert_ap(run(gts, base_set(80)[1]), "Car", "easy", 0.0, 0.0)
    # IoU exactly 0.7 is not a match (IoU > 0.7 required); 0.71 is.
    gts = [[("Car", [0.0, 0.0, 100.0, 50.0], 0.0, 0)] for _ in range(80)]
    dts = [[("Car", [0.0, 0.0, 70.0, 50.0], score(k))] for k in range(80)]  # 3500/5000
    assert_ap(run(gts, dts), "Car", "easy", 0.0, 0.0)
    dts = [[("Car", [0.0, 0.0, 71.0, 50.0], score(k))] for k in range(80)]
    assert_ap(run(gts, dts), "Car", "easy", 100.0, 100.0)
    # class names compare case-insensitively (strcasecmp)
    gts, dts = base_set(80)
    gts = [[("CAR",) + g[0][1:]] for g in gts]
    dts = [[("car",) + d[0][1:]] for d in dts]
    assert_ap(run(gts, dts), "Car", "easy", 100.0, 100.0)


def test_zero_tp_plus_fp_gives_nan_like_the_devkit():
    # Van V listed before car C; d1 overlaps only V, d2 overlaps both. First pass: V takes the
    # higher-scored d1, so C's TP is d2 (threshold 0.5). At that threshold V takes d2 (larger
    # IoU), C is missed and d1 sits in a DontCare region: tp = fp = 0, precision 0/0 = NaN at
    # position 0. R11 includes position 0 (NaN), R40 does not (0).
    g = [("Van", [0.0, 0.0, 100.0, 50.0], 0.0, 0), ("Car", [10.0, 0.0, 110.0, 50.0], 0.0, 0),
         ("DontCare", [-10.0, 0.0, 95.0, 52.0], -1.0, -1)]
    d = [("Car", [-8.0, 0.0, 92.0, 50.0], 0.9), ("Car", [5.0, 0.0, 105.0, 50.0], 0.5)]
    with pytest.warns(RuntimeWarning, match="tp \\+ fp == 0"):
        res = run([g], [d], classes=("Car",))
    assert math.isnan(res["Car"]["easy"]["AP_R11"])
    assert res["Car"]["easy"]["AP_R40"] == 0.0


def test_return_curves_layout():
    gts, dts = base_set(80, CLASSES)
    res, curves = run(gts, dts, return_curves=True)
    assert res == run(gts, dts)
    cur = curves["Cyclist"]["moderate"]
    assert cur["precision"].shape == (41,) and cur["recall"].shape == (41,)
    np.testing.assert_allclose(cur["recall_points"], np.arange(41) / 40)
    # recall at threshold j = tp / (tp + fn) = (i_j + 1) / 80 with i = 0, 1, 3, ..., 79
    np.testing.assert_allclose(cur["recall"], np.r_[1, np.arange(2, 81, 2)] / 80)


def test_input_errors_name_the_problem():
    g, d = gt_anno([("Car", BOX["Car"], 0.0, 0)]), dt_anno([("Car", BOX["Car"], 0.9)])
    with pytest.raises(ValueError, match="1 images but dt_annos has 2"):
        evaluate_kitti([g], [d, d])
    bad = dict(d)
    del bad["score"]
    with pytest.raises(KeyError, match=r"dt_annos\[0\]: missing key 'score'"):
        evaluate_kitti([g], [bad])
    bad = dict(g, bbox=np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"gt_annos\[0\]: 'bbox' must have shape \(1, 4\)"):
        evaluate_kitti([bad], [d])
    bad = dict(g, occluded=np.zeros(2))
    with pytest.raises(ValueError, match="'occluded' must have shape"):
        evaluate_kitti([bad], [d])
    with pytest.raises(ValueError, match="unknown KITTI class 'Bus'"):
        evaluate_kitti([g], [d], classes=("Bus",))


# ------------------------------------------------------------------------------------------
# randomized cross-check against a loop-based reference
# ------------------------------------------------------------------------------------------
REF_MIN_OVERLAP = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
REF_NEUTRAL = {"car": "van", "pedestrian": "person_sitting"}
REF_LIMITS = [(40, 0, 0.15), (25, 1, 0.30), (25, 2, 0.50)]  # min height, max occ, max trunc


def ref_overlap(det, gt, own_area_only=False):
    """IoU of two boxes, or intersection / area(det) for DontCare regions."""
    iw = min(det[2], gt[2]) - max(det[0], gt[0])
    ih = min(det[3], gt[3]) - max(det[1], gt[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    det_area = (det[2] - det[0]) * (det[3] - det[1])
    if own_area_only:
        return inter / det_area
    return inter / (det_area + (gt[2] - gt[0]) * (gt[3] - gt[1]) - inter)


def ref_flags(gt, dt, cls, level):
    """Per GT: 'valid' / 'ignored' / None (unrelated); per detection: same. Plus DontCare boxes."""
    min_h, max_occ, max_tr = REF_LIMITS[level]
    gflags, dc = [], []
    for name, box, tr, oc in zip(gt["name"], gt["bbox"], gt["truncated"], gt["occluded"]):
        name = name.lower()
        if name == "dontcare":
            dc.append(box)
        hard_to_see = oc > max_occ or tr > max_tr or (box[3] - box[1]) <= min_h
        if name == cls:
            gflags.append("ignored" if hard_to_see else "valid")
        elif REF_NEUTRAL.get(cls) == name:
            gflags.append("ignored")
        else:
            gflags.append(None)
    dflags = []
    for name, box in zip(dt["name"], dt["bbox"]):
        if int(abs(box[1] - box[3])) < min_h:
            dflags.append("ignored")
        elif name.lower() == cls:
            dflags.append("valid")
        else:
            dflags.append(None)
    return gflags, dflags, dc


def ref_image_stats(gt, dt, flags, cls, threshold):
    """Match one image. threshold None = first pass (pick by score); else pick by IoU."""
    gflags, dflags, dc = flags
    thr = REF_MIN_OVERLAP[cls]
    taken = [False] * len(dflags)
    live = [f is not None and (threshold is None or s >= threshold)
            for f, s in zip(dflags, dt["score"])]
    tp_scores, tp, fn = [], 0, 0
    for gi, gflag in enumerate(gflags):
        if gflag is None:
            continue
        best = None
        if threshold is None:
            best_score = -1e7
            for j in range(len(dflags)):
                if live[j] and not taken[j] and ref_overlap(dt["bbox"][j], gt["bbox"][gi]) > thr:
                    if dt["score"][j] > best_score:
                        best, best_score = j, dt["score"][j]
        else:
            valid = [(ref_overlap(dt["bbox"][j], gt["bbox"][gi]), j) for j in range(len(dflags))
                     if live[j] and not taken[j] and dflags[j] == "valid"]
            valid = [(o, j) for o, j in valid if o > thr]
            small = [j for j in range(len(dflags)) if live[j] and not taken[j]
                     and dflags[j] == "ignored" and ref_overlap(dt["bbox"][j], gt["bbox"][gi]) > thr]
            if valid:
                best = max(valid, key=lambda oj: (oj[0], -oj[1]))[1]
            elif small:
                best = small[0]
        if best is None:
            fn += gflag == "valid"
            continue
        taken[best] = True
        if gflag == "valid" and dflags[best] == "valid":
            tp += 1
            tp_scores.append(dt["score"][best])
    fp = 0
    for j in range(len(dflags)):
        if live[j] and not taken[j] and dflags[j] == "valid":
            if not any(ref_overlap(dt["bbox"][j], r, own_area_only=True) > thr for r in dc):
                fp += 1
    return tp, fp, fn, tp_scores


def ref_ap(gts, dts, cls, level):
    cls = cls.lower()
    flags = [ref_flags(g, d, cls, level) for g, d in zip(gts, dts)]
    n_gt = sum(f[0].count("valid") for f in flags)
    scores = []
    for g, d, f in zip(gts, dts, flags):
        scores += ref_image_stats(g, d, f, cls, None)[3]
    scores.sort(reverse=True)
    thresholds, target = [], 0.0
    for i, s in enumerate(scores):
        last = i == len(scores) - 1
        here, after = (i + 1) / n_gt, ((i + 2) / n_gt if not last else (i + 1) / n_gt)
        if not last and (after - target) < (target - here):
            continue  # the next score approximates the recall target better
        thresholds.append(s)
        target += 1.0 / 40.0
    prec = [0.0] * 41
    for k, t in enumerate(thresholds):
        tp = fp = 0
        for g, d, f in zip(gts, dts, flags):
            a, b, _, _ = ref_image_stats(g, d, f, cls, t)
            tp, fp = tp + a, fp + b
        prec[k] = tp / (tp + fp)
    for k in range(len(thresholds)):
        prec[k] = max(prec[k:])
    return 100 * sum(prec[1:]) / 40, 100 * sum(prec[0::4]) / 11


GT_TYPES = ["Car", "Car", "Car", "Pedestrian", "Pedestrian", "Cyclist", "Van", "Person_sitting",
            "Truck", "DontCare", "Misc"]
DT_TYPES = ["Car", "Car", "Pedestrian", "Cyclist", "Van"]


def random_box(rng):
    x1, y1 = rng.uniform(0, 300), rng.uniform(0, 150)
    # heights near the 25 / 40 px limits are over-represented
    h = float(rng.choice([25.0, 40.0, 24.99, 39.99, 40.01, 25.01])) if rng.random() < 0.3 \
        else rng.uniform(10, 120)
    return [x1, y1, x1 + rng.uniform(10, 120), y1 + h]


def random_image(rng, max_gt, max_dt, noise, score_levels):
    """Crowded images. Most labelled objects are found once with a high score (the class may
    be wrong, Van may be called Car), some several times; the rest of the detections are
    jittered copies of random labels and random boxes. Heights, truncations and occlusions hit
    the difficulty limits often; coarse scores (``score_levels``) create ties."""
    n = int(rng.integers(0, max_gt + 1))
    objs = [(str(rng.choice(GT_TYPES)), random_box(rng),
             float(rng.choice([0.0, 0.15, 0.3, 0.5, 0.2, 0.6, 0.1])), int(rng.integers(0, 4)))
            for _ in range(n)]

    def jitter(box, s):
        b = np.array(box)
        return list(b + rng.normal(0, s, 4) * np.array([b[2] - b[0], b[3] - b[1]] * 2))

    dets = []
    for name, box, _, _ in objs:
        if name in ("Car", "Pedestrian", "Cyclist", "Van") and rng.random() < 0.8:
            det_name = name if rng.random() < 0.8 else str(rng.choice(DT_TYPES))
            dets.append((det_name, jitter(box, noise), 0.4 + 0.6 * rng.random()))
    for _ in range(int(rng.integers(0, max_dt + 1))):
        if objs and rng.random() < 0.6:
            name, box, _, _ = objs[int(rng.integers(n))]
            b = jitter(box, rng.uniform(0, 0.25))
            if name not in CLASSES or rng.random() < 0.3:
                name = str(rng.choice(DT_TYPES))
        else:
            b, name = random_box(rng), str(rng.choice(DT_TYPES))
        dets.append((name, b, 0.7 * rng.random()))
    if score_levels:
        dets = [(nm, b, float(np.floor(s * score_levels)) / score_levels) for nm, b, s in dets]
    order = rng.permutation(len(dets))  # detection order matters for ties: shuffle it
    return gt_anno(objs), dt_anno([dets[i] for i in order])


@pytest.mark.parametrize("seed,noise,score_levels", [(0, 0.02, None), (1, 0.06, 6), (2, 0.12, None),
                                                     (3, 0.04, 3)])
def test_matches_loop_reference_on_random_images(seed, noise, score_levels):
    rng = np.random.default_rng(seed)
    pairs = [random_image(rng, 8, 8, noise, score_levels) for _ in range(250)]
    gts, dts = [p[0] for p in pairs], [p[1] for p in pairs]
    res = evaluate_kitti(gts, dts)
    for c in CLASSES:
        for lvl, d in enumerate(DIFFS):
            r40, r11 = ref_ap(gts, dts, c, lvl)
            assert res[c][d]["AP_R40"] == pytest.approx(r40, abs=1e-4), (c, d)
            assert res[c][d]["AP_R11"] == pytest.approx(r11, abs=1e-4), (c, d)
    # the cases must not be trivial: most APs are strictly between 0 and 100
    aps = [res[c][d]["AP_R40"] for c in CLASSES for d in DIFFS]
    assert sum(0 < a < 100 for a in aps) >= 6, aps


# ------------------------------------------------------------------------------------------
# files: result format, round trip through the reader
# ------------------------------------------------------------------------------------------
def random_label_objects(rng, n_images):
    """KITTI-like labels with 2-decimal values: Car, Pedestrian and Cyclist in every image plus
    a random other type, so that every class has well over 80 objects per difficulty."""
    images = []
    for _ in range(n_images):
        objs = []
        for t in ["Car", "Pedestrian", "Cyclist", str(rng.choice(
                ["Van", "Person_sitting", "Truck", "Misc", "DontCare", "Tram"]))]:
            x1, y1 = rng.uniform(0, 1100), rng.uniform(0, 200)
            h = rng.uniform(20, 150)
            box = [round(v, 2) for v in (x1, y1, x1 + rng.uniform(15, 140), y1 + h)]
            objs.append({
                "type": t, "truncated": float(rng.choice([0.0, 0.0, 0.1, 0.15, 0.3, 0.5, 0.8])),
                "occluded": int(rng.choice([0, 0, 0, 1, 2, 3])),
                "alpha": round(float(rng.uniform(-3, 3)), 2), "bbox": box,
                "dimensions": [1.5, 1.6, 3.9], "location": [round(float(rng.uniform(-10, 10)), 2), 1.7, 20.0],
                "rotation_y": round(float(rng.uniform(-3, 3)), 2),
            })
        images.append(objs)
    return images


def test_ground_truth_written_as_results_scores_100(tmp_path):
    from clock_distill.data.kitti import read_kitti_label_file

    rng = np.random.default_rng(0)
    images = random_label_objects(rng, 400)
    gts = [objects_to_anno(objs) for objs in images]
    for k, g in enumerate(gts):
        write_kitti_result_file(tmp_path / f"{k:06d}.txt", dict(g, score=np.ones(len(g["name"]))))
    dts = [objects_to_anno(read_kitti_label_file(tmp_path / f"{k:06d}.txt")) for k in range(len(gts))]
    np.testing.assert_array_equal(dts[3]["bbox"], gts[3]["bbox"])
    res, curves = evaluate_kitti(gts, dts, return_curves=True)
    for c in CLASSES:
        for d in DIFFS:
            assert len(curves[c][d]["thresholds"]) == 41, (c, d)  # enough objects for 100
            assert_ap(res, c, d, 100.0, 100.0)


def test_result_file_format(tmp_path):
    path = tmp_path / "sub" / "000007.txt"
    write_kitti_result_file(path, dt_anno([("Car", [1.0, 2.5, 30.123, 40.0], 0.123456789),
                                           ("Pedestrian", [5, 6, 7, 8], 1e-5)]))
    lines = path.read_text().splitlines()
    assert lines[0].split() == ["Car", "-1.00", "-1", "-10.00", "1.00", "2.50", "30.12", "40.00",
                                "-1.00", "-1.00", "-1.00", "-1000.00", "-1000.00", "-1000.00",
                                "-10.00", "0.123456789"]
    assert len(lines[1].split()) == 16 and float(lines[1].split()[-1]) == 1e-5
    write_kitti_result_file(tmp_path / "empty.txt", dt_anno([]))
    assert (tmp_path / "empty.txt").read_text() == ""
    with pytest.raises(KeyError, match="needs 'name', 'bbox' and 'score'"):
        write_kitti_result_file(tmp_path / "x.txt", gt_anno([("Car", BOX["Car"], 0.0, 0)]))


def test_objects_to_anno():
    objs = random_label_objects(np.random.default_rng(1), 1)[0]
    a = objects_to_anno(objs)
    assert a["bbox"].shape == (4, 4) and a["dimensions"].shape == (4, 3)
    assert a["occluded"].dtype == np.int64 and "score" not in a
    assert list(a["name"][:3]) == ["Car", "Pedestrian", "Cyclist"]
    a = objects_to_anno([dict(o, score=0.5) for o in objs])
    np.testing.assert_array_equal(a["score"], np.full(4, 0.5))
    assert objects_to_anno([])["bbox"].shape == (0, 4)
    with pytest.raises(KeyError, match="object 1: missing key 'bbox'"):
        objects_to_anno([objs[0], {k: v for k, v in objs[1].items() if k != "bbox"}])
    with pytest.raises(ValueError, match="have no 'score'"):
        objects_to_anno([dict(objs[0], score=1.0), objs[1]])


def test_json_and_table(tmp_path):
    res = run(*base_set(80, CLASSES))
    p = save_results_json(res, tmp_path / "r.json")
    import json

    assert json.loads(p.read_text())["Car"]["moderate"]["AP_R40"] == 100.0
    table = format_results_table(res)
    assert "Cyclist" in table and "mAP" in table and "100.0000" in table
