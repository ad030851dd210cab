#!/usr/bin/env python
"""Pretrain a ResNet on the synthetic KITTI crops: the stand-in for ImageNet weights.

    python tools/pretrain_backbone.py [--data datasets/kitti_synthetic] [--depth 18 --width 0.5 ...]
        [--steps 600] [--out PATH] [--force]

Writes ``output/pretrained/synthetic_R-<depth>-w<width>.pkl`` (``$CLOCK_DISTILL_CACHE``) in the
layout of detectron2's torchvision-converted ``R-50.pkl``, plus a ``.json`` with the settings and
the crop accuracy on the ``tune`` split. A second run with the same settings and data reuses it.
Configs name it as ``train.init_checkpoint="synthetic-pretrained://R-18-w0.5"``, which also makes
it on first use; with real ImageNet weights use ``train.init_checkpoint=/path/R-18.pkl``.
"""

import argparse
import sys
from pathlib import Path

from clock_distill.data.synthetic import ensure_synthetic_kitti
from clock_distill.pretrain import PRETRAIN_DEFAULTS, pretrain_backbone


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("datasets/kitti_synthetic"))
    p.add_argument("--depth", type=int, nargs="+", default=[18])
    p.add_argument("--width", type=float, nargs="+", default=[1.0, 0.5])
    p.add_argument("--steps", type=int, default=PRETRAIN_DEFAULTS["steps"])
    p.add_argument("--out", type=Path, help="output file (one depth and width only)")
    p.add_argument("--force", action="store_true", help="retrain even if a matching file exists")
    args = p.parse_args(argv)
    if args.out and len(args.depth) * len(args.width) > 1:
        p.error("--out needs exactly one --depth and one --width")
    ensure_synthetic_kitti(args.data)
    for depth in args.depth:
        for width in args.width:
            pretrain_backbone(args.data, depth, width, out=args.out, force=args.force, steps=args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
