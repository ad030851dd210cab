#!/usr/bin/env python
"""Export a KITTI split as a COCO instances json (see clock_distill.data.coco_export).

    python tools/kitti_to_coco.py KITTI_ROOT --split val --out OUT.json
        [--classes Car Pedestrian Cyclist] [--no-ignore-regions]

By default DontCare boxes become ``iscrowd=1`` boxes of every class, Van of Car and
Person_sitting of Pedestrian, so that COCO's evaluation ignores detections on them as the
KITTI devkit does; ``--no-ignore-regions`` leaves them out (plain COCO). ``file_name`` is
relative to ``KITTI_ROOT/training/image_2``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from clock_distill.data.coco_export import write_coco_json
from clock_distill.data.kitti import KITTI_CLASSES, KittiFormatError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="KITTI root (training/image_2, training/label_2, ImageSets/)")
    p.add_argument("--split", default="val", help="ImageSets/{split}.txt (default: val)")
    p.add_argument("--out", required=True, type=Path, help="COCO json to write")
    p.add_argument("--classes", nargs="+", default=list(KITTI_CLASSES))
    p.add_argument("--no-ignore-regions", action="store_true",
                   help="leave DontCare and neutral objects out instead of iscrowd=1 boxes")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    try:
        coco = write_coco_json(args.root, args.split, args.out, args.classes,
                               ignore_regions=not args.no_ignore_regions)
    except (FileNotFoundError, KittiFormatError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    anns = coco["annotations"]
    crowd = sum(a["iscrowd"] for a in anns)
    per_class = {c["name"]: sum(1 for a in anns if a["category_id"] == c["id"] and not a["iscrowd"])
                 for c in coco["categories"]}
    print(f"wrote {args.out}: {len(coco['images'])} images, {len(anns) - crowd} objects "
          f"({', '.join(f'{k} {v}' for k, v in per_class.items())}), {crowd} iscrowd boxes, "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
