#!/usr/bin/env python
"""Train our model and its Hugging Face transformers peer side by side, from the same start
on the same batches (benchmark-only; `make bench` installs transformers).

    python tools/peer_train.py --config-file configs/dab_detr/dab_detr_r18_kitti_synthetic.py \\
        --out output/peer/dab_detr [--sides both|ours|peer] [--eval-split kitti_synthetic_tune] [--resume] \\
        [--peer-anchor-init peer|reference] \\
        [train.max_iter=300 ...]

The peer has our model's sizes and a copy of our (pretrained) backbone; each side has its own
optimizer and schedule from the config. Writes ``curves.json`` (unweighted final-layer losses
and s/step every --log-period steps) and ``summary.json`` (with --eval-split, both sides'
KITTI results). Library: ``clock_distill.peers.train_side_by_side``.
"""

import argparse
import json
import sys

from detectron2.config import LazyConfig
from detectron2.utils.logger import setup_logger

from clock_distill.config import apply_overrides
from clock_distill.peers import PEER_BUILDERS, train_side_by_side

FAMILY_OF = {"DABDETR": "dab_detr"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config-file", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--sides", default="both", choices=["both", "ours", "peer"], help="which models to train")
    p.add_argument("--eval-split", help="a registered test dataset, e.g. kitti_synthetic_tune")
    p.add_argument("--resume", action="store_true", help="go on from OUT/last.pth")
    p.add_argument("--log-period", type=int, default=10)
    p.add_argument("--peer-anchor-init", choices=["peer", "reference"], default="peer",
                   help="DAB-DETR: transformers' anchor init (all at one box) or the reference code's N(0, 1)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY=VALUE")
    args = p.parse_args(argv)
    setup_logger(name="detectron2")
    cfg = apply_overrides(LazyConfig.load(args.config_file), args.opts)
    target = cfg.model._target_
    name = target.__name__ if hasattr(target, "__name__") else str(target).rsplit(".", 1)[-1]
    family = FAMILY_OF.get(name)
    if family is None:
        p.error(f"{args.config_file}: model {name} has no transformers peer here (peers: {sorted(PEER_BUILDERS)})")
    sides = ("ours", "peer") if args.sides == "both" else (args.sides,)
    summary = train_side_by_side(cfg, family, sides, args.out, resume=args.resume,
                                 log_period=args.log_period, eval_split=args.eval_split,
                                 peer_kwargs={"anchor_init": args.peer_anchor_init})
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
