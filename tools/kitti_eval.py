#!/usr/bin/env python
"""Official KITTI 2D-object AP of a directory of result files (devkit rules, R40 and R11).

    python tools/kitti_eval.py GT_LABEL_DIR RESULT_DIR [--split ImageSets/val.txt] [--json OUT]
        [--classes Car Pedestrian Cyclist] [--report DIR] [--allow-missing]

GT_LABEL_DIR holds KITTI label files (``000123.txt``, 15 fields per object), RESULT_DIR result
files of the same names (16 fields: the label fields plus a score). The images are the ids of
``--split`` (one per line), or every ``*.txt`` of GT_LABEL_DIR. Like the devkit, a missing
result file is an error (the devkit stops with "Couldn't read"); ``--allow-missing`` counts
it as an image without detections instead, and says how many there were.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from clock_distill.data.kitti import KittiFormatError, read_kitti_label_file
from clock_distill.evaluation.kitti import (
    evaluate_kitti,
    format_results_table,
    objects_to_anno,
    save_results_json,
)


class EvalInputError(Exception):
    """Bad command-line input; the message names the path."""


def image_ids(gt_dir: Path, split: Path | None) -> list[str]:
    if split is not None:
        if not split.is_file():
            raise EvalInputError(f"split file not found: {split}")
        ids = [ln.strip() for ln in split.read_text().splitlines() if ln.strip()]
        if not ids:
            raise EvalInputError(f"split file is empty: {split}")
        return ids
    ids = sorted(p.stem for p in gt_dir.glob("*.txt"))
    if not ids:
        raise EvalInputError(f"no *.txt label files in {gt_dir}")
    return ids


def load_annos(gt_dir: Path, result_dir: Path, ids: list[str], allow_missing: bool):
    """Read labels and results for ``ids``. Returns (gt_annos, dt_annos, missing result paths)."""
    gt_annos, dt_annos, missing = [], [], []
    for i in ids:
        gt_path = gt_dir / f"{i}.txt"
        if not gt_path.is_file():
            raise EvalInputError(f"label file not found: {gt_path}")
        gt_annos.append(objects_to_anno(read_kitti_label_file(gt_path)))
        res_path = result_dir / f"{i}.txt"
        if not res_path.is_file():
            missing.append(res_path)
            objs = []
        else:
            objs = read_kitti_label_file(res_path)
            for k, o in enumerate(objs):
                if "score" not in o:
                    # the devkit's fscanf would silently drop such a line; we refuse it
                    raise EvalInputError(f"{res_path}: object {k + 1} has 15 fields; result lines "
                                         "need a 16th, the score")
        dt_annos.append(objects_to_anno(objs))
    if missing and not allow_missing:
        shown = "\n  ".join(str(p) for p in missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise EvalInputError(f"{len(missing)} result file(s) missing (the devkit stops here too; "
                             f"--allow-missing counts them as no detections):\n  {shown}{more}")
    return gt_annos, dt_annos, missing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("gt_label_dir", type=Path, help="directory of KITTI label files (label_2)")
    p.add_argument("result_dir", type=Path, help="directory of result files, same file names")
    p.add_argument("--split", type=Path, default=None, help="image id list, e.g. ImageSets/val.txt")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--classes", nargs="+", default=["Car", "Pedestrian", "Cyclist"])
    p.add_argument("--report", type=Path, default=None,
                   help="also write kitti_report.md/.json and PR plots into this directory")
    p.add_argument("--allow-missing", action="store_true",
                   help="treat a missing result file as an image without detections")
    args = p.parse_args(argv)
    try:
        for d, what in ((args.gt_label_dir, "label"), (args.result_dir, "result")):
            if not d.is_dir():
                raise EvalInputError(f"{what} directory not found: {d}")
        ids = image_ids(args.gt_label_dir, args.split)
        t0 = time.perf_counter()
        gts, dts, missing = load_annos(args.gt_label_dir, args.result_dir, ids, args.allow_missing)
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        results, curves = evaluate_kitti(gts, dts, classes=args.classes, return_curves=True)
        t_eval = time.perf_counter() - t0
    except (EvalInputError, KittiFormatError, FileNotFoundError) as e:
        print(f"kitti_eval: error: {e}", file=sys.stderr)
        return 1
    n_gt = sum(len(a["name"]) for a in gts)
    n_dt = sum(len(a["name"]) for a in dts)
    print(f"{len(ids)} images, {n_gt} labelled objects, {n_dt} detections "
          f"(read {t_read:.2f} s, evaluated {t_eval:.2f} s)")
    if missing:
        print(f"warning: {len(missing)} result file(s) missing, counted as no detections "
              f"(first: {missing[0]})", file=sys.stderr)
    print("KITTI 2D AP (%), official devkit rules; Moderate ranks")
    print(format_results_table(results))
    if args.json is not None:
        print(f"wrote {save_results_json(results, args.json)}")
    if args.report is not None:
        from clock_distill.evaluation.report import write_kitti_report

        paths = write_kitti_report(results, args.report, curves)
        print(f"wrote {paths['markdown']} (+ {len(paths) - 1} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
