#!/usr/bin/env python
"""Benchmarks, never asserted in tests.

    python tools/benchmark.py eval [--only kitti_eval coco_eval] [--json output/bench.json]
    python tools/benchmark.py speed [--smoke] [--families ...] [--parts ...] [--results benchmarks/results/quick]
    python tools/benchmark.py speed --profile-step deformable_detr
    python tools/benchmark.py distill --profile quick [--only FAMILY/METHOD/SEED ...] [--list]
        [--aggregate-only] [--results benchmarks/results/PROFILE] [--work output/bench/PROFILE]

eval:
- kitti_eval: the official KITTI 2D AP on a KITTI-val-sized problem (3,769 images x 100 detections).
- coco_eval: pycocotools COCOeval vs faster-coco-eval on a COCO-val-sized problem (5,000 images).

speed: speed and memory, measured side by side (clock_distill.evaluation.speed_bench): ours
against Hugging Face transformers (train step, inference, deformable attention), the
distillation overhead, deployment latency and parameters, peak memory, KITTI evaluation time.
Writes RESULTS/speed.json and RESULTS/speed.md (--readme: also into the README).

distill: the distillation table (clock_distill.evaluation.distill_bench).
Tuning: --split tune [--set KEY=VALUE ... --tag NAME] runs the named cells evaluated on the tune
split (never val) into RESULTS/tune/, e.g.
    --split tune --only dino/clockdistill/1 --set model.memory_loss.weight=10 --tag lcmd_w10
Teachers run on tune only when --only names them (a teacher variant, e.g. a longer schedule with
train.eval_period=1000: the cell records every evaluation in curve_mAP_moderate_R40). Each cell (family /
method / seed) is one run of tools/lazyconfig_train_net.py; a finished cell writes
RESULTS/cells/FAMILY__METHOD__sSEED.json and is skipped next time (--only recomputes the named
cells); an interrupted cell resumes from its last checkpoint under WORK. Then RESULTS/distill.json
and RESULTS/results.md are rebuilt from all cell files. Profiles: quick (2 CPU cores, synthetic
KITTI), smoke (2 steps on a tiny set), full (paper scale on real KITTI, GPU).
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_eval(args) -> int:
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


def run_distill(args) -> int:
    from clock_distill.evaluation.distill_bench import PROFILES, aggregate, profile_cells, run_cell

    profile = PROFILES[args.profile]
    results = args.results or REPO / "benchmarks" / "results" / profile.name
    work = (args.work or REPO / "output" / "bench" / profile.name).resolve()
    teacher_work = work
    if args.set and args.split != "tune":
        print("error: --set changes a setting, which is tuning: it needs --split tune (val is never tuned on)", file=sys.stderr)
        return 2
    if args.split == "tune":
        if args.set and not args.tag:
            print("error: --set needs --tag NAME, which names the variant in the tuning table", file=sys.stderr)
            return 2
        results, work = results / "tune", work / "tune"
    cells_dir = results / "cells"
    try:
        cells = profile_cells(profile, args.only)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.split == "tune":
        # Tuning cells evaluate on tune and distill from the profile's own teacher cells. A
        # teacher runs on tune only when named (--only): a teacher variant, e.g. a longer schedule.
        extra = (f"dataloader.test.dataset.names={args.test_dataset}", *args.set)
        cells = [dataclasses.replace(c, overrides=c.overrides + extra, tag=args.tag or "") for c in cells
                 if c.method != "teacher" or args.only]
    if args.list:
        for c in cells:
            done = (cells_dir / f"{c.file_stem}.json").exists()
            print(f"{'done' if done else 'todo'}  {c.name:40s} {c.config} {' '.join(c.overrides)}")
        return 0
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if profile.name == "smoke":
        from clock_distill.data.synthetic import ensure_synthetic_kitti

        data = work / "datasets"
        ensure_synthetic_kitti(data / "kitti_synthetic", width=160, height=48, splits={"train": 6, "tune": 2, "val": 4})
        env["DETECTRON2_DATASETS"] = str(data)
    if not args.aggregate_only:
        todo = [c for c in cells if args.only or not (cells_dir / f"{c.file_stem}.json").exists()]
        print(f"profile {profile.name}: {len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run")
        t0 = time.perf_counter()
        for i, cell in enumerate(todo):
            print(f"cell {i + 1}/{len(todo)} ({(time.perf_counter() - t0) / 60:.0f} min so far)")
            run_cell(cell, profile, cells_dir, work, REPO, env=env, teacher_work=teacher_work)
    summary = aggregate(profile, cells_dir, results, split=args.split)
    print((results / "results.md").read_text())
    if args.readme:
        splice_results(args.readme, profile.name if args.split == "val" else f"{profile.name}/tune", results / "results.md")
    print(f"wrote {results / 'distill.json'} and {results / 'results.md'} ({sum(len(v) for v in summary['distill'].values())} rows)")
    return 0


def run_speed_cmd(args) -> int:
    import torch

    from clock_distill.evaluation.speed_bench import SpeedSettings, profile_peer_step, run_speed, speed_markdown

    kw = dict(threads=args.threads, device=args.device)
    if args.profile_step:
        torch.set_num_threads(args.threads)
        print(profile_peer_step(args.profile_step, SpeedSettings(**kw)))
        return 0
    if args.families:
        kw["families"] = tuple(args.families)
        kw["peer_families"] = tuple(f for f in args.families if f != "dino")  # DINO has no transformers peer
    if args.parts:
        kw["parts"] = tuple(args.parts)
    settings = SpeedSettings.for_smoke(**kw) if args.smoke else SpeedSettings(repeats=args.repeats, **kw)
    results = args.results or REPO / "benchmarks" / "results" / ("smoke" if args.smoke else "quick")
    if args.smoke:
        from clock_distill.data.synthetic import ensure_synthetic_kitti

        # Tiny images, in the work folder: the smoke run checks the plumbing, not the speed.
        data = (args.work or REPO / "output" / "bench" / "smoke").resolve() / "datasets"
        ensure_synthetic_kitti(data / "kitti_synthetic", width=160, height=48, splits={"train": 4, "tune": 2, "val": 2})
        os.environ["DETECTRON2_DATASETS"] = str(data)
    summary = run_speed(settings)
    results.mkdir(parents=True, exist_ok=True)
    (results / "speed.json").write_text(json.dumps(summary, indent=1) + "\n")
    md = speed_markdown(summary)
    (results / "speed.md").write_text(md)
    print(md)
    if args.readme:
        splice_results(args.readme, "speed", results / "speed.md")
    print(f"wrote {results / 'speed.json'} and {results / 'speed.md'}")
    return 0


def splice_results(readme: Path, key: str, table: Path) -> None:
    """Put ``table`` between ``<!-- results:KEY -->`` and ``<!-- /results:KEY -->`` in ``readme``."""
    text = readme.read_text()
    start, end = f"<!-- results:{key} -->", f"<!-- /results:{key} -->"
    if start not in text or end not in text:
        raise SystemExit(f"error: {readme} has no {start} ... {end} markers to put the table between")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table.read_text().rstrip()}\n{end}{tail}")
    print(f"updated the table in {readme}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval", help="evaluator speed")
    e.add_argument("--only", nargs="+", choices=("kitti_eval", "coco_eval"), default=("kitti_eval", "coco_eval"))
    e.add_argument("--json", type=Path, default=Path("output/bench.json"))
    sp = sub.add_parser("speed", help="speed and memory against the peer, distillation overhead, deployment")
    sp.add_argument("--smoke", action="store_true", help="tiny images, one repeat: checks the plumbing only")
    sp.add_argument("--families", nargs="+", choices=("dab_detr", "deformable_detr", "dino"))
    sp.add_argument("--parts", nargs="+", choices=("peer", "msda", "distill_overhead", "deploy", "memory", "kitti_eval"))
    sp.add_argument("--repeats", type=int, default=7)
    sp.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    sp.add_argument("--device", default="cpu", help="cpu or cuda")
    sp.add_argument("--results", type=Path, help="default benchmarks/results/quick (smoke: benchmarks/results/smoke)")
    sp.add_argument("--work", type=Path, help="--smoke's data folder, default output/bench/smoke")
    sp.add_argument("--readme", type=Path, help="also put speed.md into this file between <!-- results:speed --> markers")
    sp.add_argument("--profile-step", choices=("deformable_detr", "dab_detr"),
                    help="only print torch.profiler tables of ours' and the peer's train step (where the time goes)")
    d = sub.add_parser("distill", help="the distillation table, cell by cell")
    d.add_argument("--profile", default="quick", choices=("quick", "smoke", "full"))
    d.add_argument("--only", nargs="+", metavar="FAMILY/METHOD/SEED", help="run (again) only these cells")
    d.add_argument("--list", action="store_true", help="list the cells and whether each is done")
    d.add_argument("--aggregate-only", action="store_true", help="only rebuild distill.json and results.md")
    d.add_argument("--results", type=Path, help="default benchmarks/results/PROFILE (committed)")
    d.add_argument("--work", type=Path, help="checkpoints and logs, default output/bench/PROFILE (not committed)")
    d.add_argument("--readme", type=Path, help="also put results.md into this file between <!-- results:PROFILE --> markers")
    d.add_argument("--split", choices=("val", "tune"), default="val",
                   help="tune: evaluate on the tune split, results under RESULTS/tune (for every choice that is tuned)")
    d.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="with --split tune: overrides of a tuning variant")
    d.add_argument("--tag", help="with --set: the variant's name (row METHOD[TAG])")
    d.add_argument("--test-dataset", default="kitti_synthetic_tune", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return {"eval": run_eval, "speed": run_speed_cmd, "distill": run_distill}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
