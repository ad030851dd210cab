#!/usr/bin/env python
"""Write a synthetic dataset in the real KITTI 2D-object layout (see clock_distill.data.synthetic).

    python tools/make_synthetic_kitti.py --out datasets/kitti_synthetic [--num-images 200]
        [--seed 0] [--width 640 --height 192] [--if-missing]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from clock_distill.data.synthetic import DEFAULT_HEIGHT, DEFAULT_WIDTH, GENERATOR_VERSION, generate_synthetic_kitti


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="KITTI root to write")
    p.add_argument("--num-images", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    p.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing if OUT already holds a synthetic set made with the same arguments")
    args = p.parse_args(argv)

    wanted = {"generator_version": GENERATOR_VERSION, "num_images": args.num_images, "seed": args.seed,
              "width": args.width, "height": args.height, "val_every": 5}
    manifest = args.out / "synthetic.json"
    if args.if_missing and manifest.exists():
        have = json.loads(manifest.read_text())
        if have == wanted:
            print(f"synthetic KITTI already at {args.out} ({args.num_images} images, seed {args.seed})")
            return 0
        print(f"{manifest} was made with {have}; regenerating with {wanted}", file=sys.stderr)
    t0 = time.perf_counter()
    generate_synthetic_kitti(args.out, args.num_images, args.seed, args.width, args.height)
    print(f"wrote {args.num_images} synthetic KITTI images ({args.width}x{args.height}) to {args.out} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
