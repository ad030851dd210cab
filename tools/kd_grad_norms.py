#!/usr/bin/env python
"""How hard does each KD term pull on the student? The gradient norm of the detection loss and
of each KD term on the backbone, neck, encoder, decoder and adapters, on a few training
batches of a distillation config (no step is taken). Check a loss weight here before spending
a training run on it.

    python tools/kd_grad_norms.py --config-file configs/clock_distill/dino_clockdistill_kitti_synthetic.py \\
        [--student-weights output/.../model_final.pth] [--batches 2] [--json OUT] [KEY=VALUE ...]

``--student-weights`` loads a student checkpoint (a student run's ``model_final.pth``, or a
Distiller's ``model_student_final.pth``) to look at a trained student instead of the initial one.
"""

import argparse
import json
import statistics
import sys

import torch
from detectron2.config import LazyConfig, instantiate

from clock_distill.config import apply_overrides
from clock_distill.distill import Distiller
from clock_distill.distill.diagnostics import kd_grad_norms


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__)
    p.add_argument("--config-file", required=True)
    p.add_argument("--student-weights", help="a student checkpoint to load into the Distiller's student")
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the per-batch norms here")
    p.add_argument("opts", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = p.parse_args(argv)

    cfg = apply_overrides(LazyConfig.load(args.config_file), args.opts)
    torch.manual_seed(args.seed)
    model = instantiate(cfg.model)
    if not isinstance(model, Distiller):
        print(f"error: {args.config_file} builds a {type(model).__name__}, not a Distiller: no KD terms to compare",
              file=sys.stderr)
        return 2
    if args.student_weights:
        # Strict: a half-loaded student would report the gradients of random layers.
        sd = torch.load(args.student_weights, map_location="cpu", weights_only=False)
        sd = sd.get("model", sd)
        missing, unexpected = model.student.load_state_dict(sd, strict=False)
        if missing or unexpected:
            print(f"error: {args.student_weights} does not match the student of {args.config_file}: "
                  f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                  f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}", file=sys.stderr)
            return 2
    model.train()
    data = iter(instantiate(cfg.dataloader.train))
    runs = [kd_grad_norms(model, next(data)) for _ in range(args.batches)]

    parts = [k for k in runs[0]["detection"] if k != "loss"]
    print(f"{args.config_file}, student {'from ' + args.student_weights if args.student_weights else 'as initialized'}, "
          f"{args.batches} batches; gradient L2 norm per part (median over batches), and the ratio to detection's")
    print(f"| term | loss | {' | '.join(parts)} |")
    print("|---|---:|" + "---:|" * len(parts))
    med = {t: {k: statistics.median(r[t][k] for r in runs) for k in runs[0][t]} for t in runs[0]}
    for term, v in med.items():
        cells = []
        for part in parts:
            det = med["detection"][part]
            ratio = f" ({v[part] / det:.2g}x)" if term != "detection" and det > 0 and v[part] > 0 else ""
            cells.append(f"{v[part]:.3g}{ratio}")
        print(f"| {term} | {v['loss']:.4g} | {' | '.join(cells)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": args.config_file, "student_weights": args.student_weights, "overrides": args.opts,
                       "batches": runs, "median": med}, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
