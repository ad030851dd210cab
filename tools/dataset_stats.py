#!/usr/bin/env python
"""Register a KITTI root with detectron2 and print its statistics.

    python tools/dataset_stats.py --root datasets/kitti_synthetic [--splits train val]

Prints images per split and, per class, objects per official difficulty (an object is counted
at the easiest difficulty that admits it; "none" = too small, occluded or truncated for any).
"""

import argparse
import sys
from collections import Counter

from detectron2.data import DatasetCatalog, MetadataCatalog
from tabulate import tabulate

from clock_distill.data.kitti import DIFFICULTIES, kitti_difficulty, register_kitti_splits

SHOWN_TYPES = ("Car", "Pedestrian", "Cyclist", "Van", "Person_sitting", "DontCare")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True)
    p.add_argument("--splits", nargs="+", default=["train", "val"])
    p.add_argument("--prefix", default="kitti_stats")
    args = p.parse_args(argv)

    names = register_kitti_splits(args.prefix, args.root, args.splits)
    for name in names:
        records = DatasetCatalog.get(name)
        meta = MetadataCatalog.get(name)
        counts: Counter = Counter()
        empty = 0
        for r in records:
            empty += not r["annotations"]
            for obj in r["kitti_objects"]:
                level = "-" if obj["type"] == "DontCare" else (kitti_difficulty(obj) or "none")
                counts[obj["type"], level] += 1
        print(f"\n{name}: {len(records)} images ({empty} without Car/Pedestrian/Cyclist), "
              f"thing_classes={meta.thing_classes}, evaluator_type={meta.evaluator_type}")
        levels = (*DIFFICULTIES, "none")
        rows = []
        for t in SHOWN_TYPES:
            total = sum(v for (tt, _), v in counts.items() if tt == t)
            rows.append([t, *(counts[t, lv] if t != "DontCare" else "-" for lv in levels), total])
        print(tabulate(rows, headers=["type", *levels, "total"], tablefmt="github"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
