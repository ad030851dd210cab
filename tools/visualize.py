#!/usr/bin/env python
"""Inspection pictures of a DETR, or of a teacher and its students, drawn with detectron2's
Visualizer (clock_distill.visualization.inspect): one PNG per image and mode under --out.

    # a distillation config: the teacher (model.teacher_weights), the distilled student, and
    # optionally the student trained alone
    python tools/visualize.py --config-file configs/clock_distill/dino_clockdistill_kitti_synthetic.py \\
        --weights output/.../dino_clockdistill_kitti_synthetic/model_student_final.pth \\
        --baseline-weights output/.../dino_student_kitti_synthetic/model_final.pth \\
        --dataset kitti_synthetic_val --num-images 4 --out output/vis
    # a family config: one model
    python tools/visualize.py --config-file configs/dino/dino_r18_kitti_synthetic.py --weights M.pth \\
        --images a.png b.png --modes predictions attention --queries topk:5 --out output/vis

Modes (--modes, default all that apply):
  predictions  ground truth, then each model's detections (--score-thresh)
  queries      per GT object, the boxes and class probabilities of each model's target-aware
               query at --layer (needs ground truth: --dataset)
  attention    where chosen queries look at --layer: deformable sampling points of every level
               (Deformable DETR, DINO) or the attention map (DAB-DETR); --queries gt | topk:K |
               idx:i,j (gt needs --dataset)
  memory       LCMD's masks per level and each student's per-cell memory distance to the
               teacher (a distillation config and --dataset)
"""

import argparse
import sys
from pathlib import Path

from detectron2.config import LazyConfig, instantiate

from clock_distill.config import apply_overrides
from clock_distill.distill import Distiller
from clock_distill.distill.distiller import load_teacher_weights
from clock_distill.visualization.inspect import (
    MODES,
    Sample,
    draw_attention,
    draw_memory,
    draw_predictions,
    draw_target_queries,
    save_png,
)


def load_models(cfg, weights, baseline_weights):
    """(teacher or None, {name: model}) in eval mode, every checkpoint loaded strictly."""
    model = instantiate(cfg.model)
    if isinstance(model, Distiller):
        teacher, student = model.teacher, model.student
        if weights:
            load_teacher_weights(student, weights, role="student")
        models = {"teacher": teacher, "distilled student" if weights else "student (untrained)": student}
        if baseline_weights:
            alone = instantiate(cfg.model.student)
            load_teacher_weights(alone, baseline_weights, role="baseline student")
            models = {"teacher": teacher, "student alone": alone, **{k: v for k, v in models.items() if k != "teacher"}}
        return teacher.eval(), {k: m.eval() for k, m in models.items()}
    if baseline_weights:
        raise SystemExit("error: --baseline-weights needs a distillation config (a Distiller); "
                         f"{type(model).__name__} is one model")
    if not weights:
        raise SystemExit("error: --weights is required for a family config (which model to draw?)")
    load_teacher_weights(model, weights, role="model")
    return None, {"model": model.eval()}


def load_samples(cfg, dataset, images, num_images, image_ids):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data import detection_utils as utils

    mapper = instantiate(cfg.dataloader.test.mapper)
    if dataset:
        dicts = DatasetCatalog.get(dataset)
        if image_ids:
            by_id = {str(d["image_id"]): d for d in dicts}
            missing = [i for i in image_ids if i not in by_id]
            if missing:
                raise SystemExit(f"error: image ids {missing} are not in {dataset}")
            dicts = [by_id[i] for i in image_ids]
        else:
            dicts = dicts[:num_images]
        metadata = MetadataCatalog.get(dataset)
    else:
        dicts = []
        for p in images:
            if not Path(p).is_file():
                raise SystemExit(f"error: image not found: {p}")
            h, w = utils.read_image(p).shape[:2]
            dicts.append({"file_name": p, "image_id": Path(p).stem, "height": h, "width": w})
        metadata = MetadataCatalog.get(cfg.dataloader.test.dataset.names) if "dataset" in cfg.dataloader.test else None
    samples = [Sample.from_dataset_dict(d, mapper) for d in dicts]
    return samples, metadata


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__)
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", help="the model (family config) or the distilled student (distillation config; "
                                     "model_student_final.pth or the Distiller's checkpoint)")
    p.add_argument("--baseline-weights", help="distillation config: the student trained alone, drawn beside")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a registered dataset (ground truth drawn)")
    src.add_argument("--images", nargs="+", help="image files (no ground truth)")
    p.add_argument("--num-images", type=int, default=4)
    p.add_argument("--image-ids", nargs="+", help="with --dataset: these image ids instead of the first N")
    p.add_argument("--modes", nargs="+", choices=MODES)
    p.add_argument("--queries", default=None, help="attention: gt | topk:K | idx:i,j (default gt with --dataset, else topk:5)")
    p.add_argument("--layer", type=int, default=-1, help="decoder layer (negative from the last)")
    p.add_argument("--score-thresh", type=float, default=0.3)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("opts", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = p.parse_args(argv)

    cfg = apply_overrides(LazyConfig.load(args.config_file), args.opts)
    teacher, models = load_models(cfg, args.weights, args.baseline_weights)
    has_gt = bool(args.dataset)
    modes = args.modes or [m for m in MODES if (has_gt or m in ("predictions", "attention"))
                           and (teacher is not None or m != "memory")]
    if "memory" in modes and teacher is None:
        raise SystemExit("error: mode memory needs a distillation config (a teacher and a student)")
    if not has_gt and ({"queries", "memory"} & set(modes) or args.queries == "gt"):
        raise SystemExit("error: modes queries and memory, and --queries gt, need ground truth: use --dataset")
    queries = args.queries or ("gt" if has_gt else "topk:5")
    samples, metadata = load_samples(cfg, args.dataset, args.images, args.num_images, args.image_ids)
    content = None
    if teacher is not None and getattr(cfg.model, "distill_queries", None) is not None:
        content = cfg.model.distill_queries.get("content", None)
    out = Path(args.out)
    students = {k: m for k, m in models.items() if k != "teacher"}
    for s in samples:
        for mode in modes:
            if mode == "predictions":
                pic = draw_predictions(models, s, metadata, args.score_thresh)
            elif mode == "queries":
                pic = draw_target_queries(models, s, metadata, args.layer, content)
            elif mode == "attention":
                pic = draw_attention(models, s, metadata, queries, args.layer, content=content)
            else:
                mask = cfg.model.memory_loss.get("mask", "box") if cfg.model.get("memory_loss") else "box"
                pic = draw_memory(teacher, students, s, metadata, mask)
            path = out / f"{s.name}_{mode}.png"
            save_png(path, pic)
            print(f"wrote {path} ({pic.shape[1]}x{pic.shape[0]})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
