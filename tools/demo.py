#!/usr/bin/env python
"""The end-to-end distillation demo on the built-in synthetic KITTI: train (or reuse) a teacher,
train the student alone and the student with CLoCKDistill on the same schedule, evaluate all
three with the official KITTI metric, and write one comparison report.

    python tools/demo.py [--family deformable_detr|dino|dab_detr] [--out output/demo_FAMILY]
        [--teacher-iters N] [--student-iters M] [--num-pictures K] [KEY=VALUE ...]

Each stage is one run of tools/lazyconfig_train_net.py with the family's synthetic configs
(configs/clock_distill/FAMILY_{teacher,student,clockdistill}_kitti_synthetic.py) and shorter
schedules (lr x0.1 for the last fifth); its console output goes to OUT/STAGE/demo_log.txt and its
progress (iteration, ETA) to the console. A stage whose run finished with the same command is
reused, so a second run only rebuilds the report. KEY=VALUE overrides go to every stage.

OUT/report.md: KITTI AP_R40 at every difficulty side by side (deltas to the student alone),
parameters and inference time per image of each model, Moderate precision-recall curves of the
three, and tools/visualize.py's pictures of a few val images.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("teacher", "student", "clockdistill")
NAMES = {"teacher": "teacher", "student": "student alone", "clockdistill": "distilled student"}
# Seconds per step on 2 idle CPU cores, evaluation included (the Deformable DETR demo's stages,
# measured), for the first ETA only; every finished stage replaces the guess by what it measured.
GUESS_S_PER_ITER = {"teacher": 2.0, "student": 0.8, "clockdistill": 1.3}


# The first-use work inside a stage (synthetic data, stand-in backbone pretraining), shown on the
# console: minutes that would otherwise pass without a line.
FIRST_USE = re.compile(r"pretraining R-|pretrained backbone R-|generating the synthetic KITTI|synthetic KITTI images to|"
                       r"step \d+/\d+ +loss|tensors, \w+ crop accuracy")


def stage_command(family, stage, out, iters, teacher_weights, overrides):
    cfg = f"configs/clock_distill/{family}_{stage}_kitti_synthetic.py"
    cmd = [sys.executable, "tools/lazyconfig_train_net.py", "--config-file", cfg,
           f"train.output_dir={out}", f"train.max_iter={iters}", f"train.eval_period={iters}",
           f"train.checkpointer.period={iters}", f"lr_multiplier.scheduler.milestones=[{iters * 4 // 5},{iters}]",
           "train.seed=1"]
    if stage == "clockdistill":
        cmd.append(f"model.teacher_weights={teacher_weights}")
    return cmd + list(overrides)


def run_stage(cmd, out: Path, label: str) -> float:
    """Run a training stage (or reuse it); returns its wall time in seconds (0 if reused)."""
    stamp = out / "demo_stage.json"
    key = " ".join(cmd[1:])
    if stamp.is_file() and json.loads(stamp.read_text()).get("command") == key and (out / "kitti_report.json").is_file():
        print(f"  {label}: reusing {out} (same command, finished)", flush=True)
        return 0.0
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    with open(out / "demo_log.txt", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if FIRST_USE.search(line):  # a fresh clone makes the data and the stand-in backbones here
                print(f"  {label}: {re.split(r' (?:INFO|WARNING): ', line, maxsplit=1)[-1].strip()}", flush=True)
            elif " eta: " in line:
                # detectron2's progress line: "... eta: 0:03:10  iter: 99  total_loss: ..."
                eta = line.split(" eta: ", 1)[1].split()[0]
                it = line.split(" iter: ", 1)[1].split()[0] if " iter: " in line else "?"
                print(f"  {label}: iter {it}, stage ETA {eta}", flush=True)
        rc = proc.wait()
    if rc != 0:
        raise SystemExit(f"error: stage {label} failed (exit {rc}); its log: {out / 'demo_log.txt'}")
    wall = time.perf_counter() - t0
    stamp.write_text(json.dumps({"command": key, "wall_s": round(wall, 1)}) + "\n")
    return wall


def measure_models(family, out: Path, num_images: int = 10):
    """Parameters and median inference ms per val image of the three models, and the models."""
    import torch
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetCatalog

    from clock_distill.distill.distiller import load_teacher_weights

    def load(stage, weights):
        cfg = LazyConfig.load(f"configs/clock_distill/{family}_{stage}_kitti_synthetic.py")
        model = instantiate(cfg.model)
        load_teacher_weights(model, str(weights), role="model")
        return model.eval(), cfg

    models = {}
    teacher, cfg = load("teacher", out / "teacher" / "model_final.pth")
    models["teacher"] = teacher
    models["student alone"], _ = load("student", out / "student" / "model_final.pth")
    models["distilled student"], _ = load("student", out / "clockdistill" / "model_student_final.pth")
    mapper = instantiate(cfg.dataloader.test.mapper)
    inputs = [mapper(d) for d in DatasetCatalog.get("kitti_synthetic_val")[:num_images]]
    details = {}
    with torch.no_grad():
        for m in models.values():
            m([inputs[0]])  # warm-up
        times = {name: [] for name in models}
        for x in inputs:
            for name, m in models.items():  # alternating, so drift hits all three alike
                t0 = time.perf_counter()
                m([x])
                times[name].append(time.perf_counter() - t0)
    for name, m in models.items():
        details[name] = {"params (M)": round(sum(p.numel() for p in m.parameters()) / 1e6, 2),
                         "ms / image": round(1000 * statistics.median(times[name]), 1)}
    for name in details:
        details[name]["speed-up vs teacher"] = round(details["teacher"]["ms / image"] / details[name]["ms / image"], 2)
    return models, details


def pictures(models, family, out: Path, num: int):
    """tools/visualize.py's four modes on the first ``num`` val images."""
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from clock_distill.visualization.inspect import (
        Sample, draw_attention, draw_memory, draw_predictions, draw_target_queries, save_png)

    cfg = LazyConfig.load(f"configs/clock_distill/{family}_clockdistill_kitti_synthetic.py")
    mapper = instantiate(cfg.dataloader.test.mapper)
    meta = MetadataCatalog.get("kitti_synthetic_val")
    content = cfg.model.distill_queries.get("content", None)
    students = {k: v for k, v in models.items() if k != "teacher"}
    paths = []
    for d in DatasetCatalog.get("kitti_synthetic_val")[:num]:
        s = Sample.from_dataset_dict(d, mapper)
        for mode, pic in (("predictions", draw_predictions(models, s, meta)),
                          ("queries", draw_target_queries(models, s, meta, content=content)),
                          ("attention", draw_attention(models, s, meta, "gt", max_queries=3, content=content)),
                          ("memory", draw_memory(models["teacher"], students, s, meta))):
            path = out / "pictures" / f"{s.name}_{mode}.png"
            save_png(path, pic)
            paths.append(path)
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__)
    # Deformable DETR: of the two families whose synthetic teachers learn, the one that lost less
    # to distillation on this schedule and fits the 25 minutes (README, "The distillation demo").
    p.add_argument("--family", default="deformable_detr", choices=("deformable_detr", "dino", "dab_detr"))
    p.add_argument("--out", default=None, help="default: output/demo_FAMILY")
    p.add_argument("--teacher-iters", type=int, default=400)
    p.add_argument("--student-iters", type=int, default=300)
    p.add_argument("--num-pictures", type=int, default=2)
    p.add_argument("--timing-images", type=int, default=10)
    p.add_argument("opts", nargs="*", metavar="KEY=VALUE", help="overrides for every stage")
    args = p.parse_args(argv)

    out = Path(args.out or f"output/demo_{args.family}")
    out = out if out.is_absolute() else (REPO / out).resolve()
    iters = {"teacher": args.teacher_iters, "student": args.student_iters, "clockdistill": args.student_iters}
    rate = dict(GUESS_S_PER_ITER)
    t_start = time.perf_counter()
    walls = {}
    for i, stage in enumerate(STAGES):
        eta = sum(iters[s] * rate[s] for s in STAGES[i:]) / 60
        print(f"[{i + 1}/{len(STAGES) + 1}] {NAMES[stage]}: {iters[stage]} steps "
              f"({(time.perf_counter() - t_start) / 60:.1f} min so far, about {eta:.0f} min of training left)", flush=True)
        cmd = stage_command(args.family, stage, out / stage, iters[stage], out / "teacher" / "model_final.pth", args.opts)
        walls[stage] = run_stage(cmd, out / stage, NAMES[stage])
        if walls[stage]:
            rate[stage] = walls[stage] / iters[stage]

    print(f"[4/4] report: timing, pictures ({(time.perf_counter() - t_start) / 60:.1f} min so far)", flush=True)
    from clock_distill.evaluation.report import load_kitti_report, write_comparison_report

    runs = [(NAMES[s], *load_kitti_report(out / s / "kitti_report.json")) for s in ("student", "clockdistill", "teacher")]
    # The models' own configs register the synthetic dataset (generated on first use).
    from detectron2.config import LazyConfig

    LazyConfig.load(f"configs/clock_distill/{args.family}_student_kitti_synthetic.py")
    models, details = measure_models(args.family, out, args.timing_images)
    pics = pictures(models, args.family, out, args.num_pictures)
    total = time.perf_counter() - t_start
    stamps = {s: json.loads((out / s / "demo_stage.json").read_text()) for s in STAGES}
    notes = [f"Family `{args.family}`, built-in synthetic KITTI (train 1000 / val 400 images, 640x192), KITTI AP_R40 "
             f"on val. Teacher {iters['teacher']} steps; student alone and distilled student {iters['student']} steps "
             "each, the same schedule and seed (1). Wall time of each stage when it ran: "
             + ", ".join(f"{NAMES[s]} {stamps[s]['wall_s'] / 60:.1f} min" for s in STAGES)
             + f"; this run of the demo: {total / 60:.1f} min.", "",
             "Commands:", "", *[f"    python {stamps[s]['command']}" for s in STAGES]]
    report = write_comparison_report(out, runs, details, pics, title=f"CLoCKDistill demo ({args.family})", notes=notes)
    gain = runs[1][1]["mAP"]["moderate"]["AP_R40"] - runs[0][1]["mAP"]["moderate"]["AP_R40"]
    print("\n" + "\n".join(f"  {n:18s} mAP moderate {r['mAP']['moderate']['AP_R40']:6.2f}" for n, r, _ in runs))
    print(f"  gain of distillation: {gain:+.2f} (one seed, a short schedule: see the README's benchmark for seeds)")
    print(f"\ndemo done in {total / 60:.1f} min; report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
