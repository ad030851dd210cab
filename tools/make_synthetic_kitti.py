#!/usr/bin/env python
"""Write a synthetic dataset in the real KITTI 2D-object layout (see clock_distill.data.synthetic).

    python tools/make_synthetic_kitti.py --out datasets/kitti_synthetic
        [--splits train=1000 tune=200 val=400 | --num-images N]
        [--seed 0] [--width 640 --height 192] [--if-missing]

Default layout: train 1000, tune 200 (for tuning), val 400 (reported, never tuned on). With
``--num-images N`` every 5th image is val and the rest train (small sets for tests).
"""

import argparse
import sys
from pathlib import Path

from clock_distill.data.synthetic import DEFAULT_HEIGHT, DEFAULT_WIDTH, STANDARD_SPLITS, ensure_synthetic_kitti


def parse_splits(items):
    splits = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or not name or not count.isdigit():
            raise argparse.ArgumentTypeError(f"--splits entries are NAME=COUNT, got {item!r}")
        splits[name] = int(count)
    return splits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="KITTI root to write")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--splits", nargs="+", metavar="NAME=COUNT",
                       help=f"split sizes, in image-id order (default {' '.join(f'{k}={v}' for k, v in STANDARD_SPLITS.items())})")
    group.add_argument("--num-images", type=int, help="instead of --splits: N images, every 5th in val")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    p.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing if OUT already holds a synthetic set made with the same arguments")
    args = p.parse_args(argv)
    try:
        splits = parse_splits(args.splits) if args.splits else None
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    if not args.if_missing and (args.out / "synthetic.json").exists():
        (args.out / "synthetic.json").unlink()  # force: regenerate even if the arguments match
    made = ensure_synthetic_kitti(args.out, args.seed, args.width, args.height, splits=splits, num_images=args.num_images)
    if not made:
        print(f"synthetic KITTI already at {args.out} (same arguments); nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
