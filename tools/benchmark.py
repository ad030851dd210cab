#!/usr/bin/env python
"""`make bench`: speed measurements, never asserted in tests.

    python tools/benchmark.py [--only kitti_eval coco_eval] [--json output/bench.json]

- kitti_eval: the official KITTI 2D AP on a KITTI-val-sized problem (3,769 images x 100 detections).
- coco_eval: pycocotools COCOeval vs faster-coco-eval on a COCO-val-sized problem (5,000 images).
"""

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=("kitti_eval", "coco_eval"), default=("kitti_eval", "coco_eval"))
    p.add_argument("--json", type=Path, default=Path("output/bench.json"))
    args = p.parse_args(argv)

    results = {}
    if "kitti_eval" in args.only:
        from clock_distill.evaluation.bench_kitti import bench_kitti_eval

        results["kitti_eval"] = bench_kitti_eval()
        print("kitti_eval:", json.dumps(results["kitti_eval"], indent=1))
    if "coco_eval" in args.only:
        from clock_distill.evaluation.bench_coco import bench_coco_eval

        results["coco_eval"] = bench_coco_eval()
        print("coco_eval:", json.dumps(results["coco_eval"], indent=1, default=str))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
