"""Distillation through the standard entry point, as a user runs it.

For each family: the Distiller config (``configs/clock_distill/F_clockdistill_kitti_synthetic.py``)
trains a few iterations with ``tools/lazyconfig_train_net.py`` from a teacher checkpoint, logs
the KD terms, the warm-up and the teacher's own losses to metrics.json, evaluates, and exports
the student; the plain student config then evaluates the exported student with ``--eval-only``
and gets exactly the same KITTI results. Every other distillation config (KD-DETR, feature KD)
builds and trains one step. Everything runs in subprocesses: data configs register datasets
under ``$DETECTRON2_DATASETS`` at load time, and detectron2's catalogs are process-global.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ["dino", "deformable_detr", "dab_detr"]
KD_KEYS = ["loss_lcmd", "loss_tcld_cls", "loss_tcld_bbox", "loss_tcld_giou"]
FAST = [
    "dataloader.train.num_workers=0", "dataloader.test.num_workers=0", "dataloader.train.total_batch_size=2",
    "train.checkpointer.period=1000",
    # The synthetic-pretrained backbone is tests/test_pretrain.py's subject; here it would cost minutes.
    "train.init_checkpoint=",
]


def _env(data_root):
    return dict(os.environ, DETECTRON2_DATASETS=str(data_root), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")


def _run(args, data_root, timeout=300):
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=_env(data_root), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Tiny synthetic KITTI (6 images at 160x48) and a teacher checkpoint of each family,
    saved from its teacher config's model (random weights: these tests check plumbing)."""
    root = tmp_path_factory.mktemp("distill_cli")
    data = root / "datasets"
    script = f"""
import torch
from detectron2.config import LazyConfig, instantiate
from clock_distill.data.synthetic import generate_synthetic_kitti
generate_synthetic_kitti({str(data / 'kitti_synthetic')!r}, num_images=6, width=160, height=48)
for f in {FAMILIES!r}:
    torch.manual_seed(0)
    cfg = LazyConfig.load(f"configs/clock_distill/{{f}}_teacher_kitti_synthetic.py")
    torch.save({{"model": instantiate(cfg.model).state_dict()}}, f"{root}/{{f}}_teacher.pth")
"""
    _run(["-c", script], data)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_distiller_trains_from_the_cli_and_the_exported_student_evaluates_identically(workdir, family):
    data = workdir / "datasets"
    out = workdir / f"{family}_distill"
    _run([
        "tools/lazyconfig_train_net.py", "--config-file", f"configs/clock_distill/{family}_clockdistill_kitti_synthetic.py",
        f"model.teacher_weights={workdir}/{family}_teacher.pth", f"train.output_dir={out}",
        "train.max_iter=3", "train.eval_period=3", "train.log_period=1", "train.distill.warmup_iters=2", *FAST,
    ], data)
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    train_rows = [m for m in metrics if "total_loss" in m]
    assert [m["iteration"] for m in train_rows] == [0, 1, 2]
    for m in train_rows:
        for k in KD_KEYS:
            assert k in m and math.isfinite(m[k]), (k, m)
    assert [m["kd/scale"] for m in train_rows] == [0.5, 1.0, 1.0]  # linear warm-up over 2 steps
    assert all(m["kd/num_queries"] > 0 for m in train_rows)
    # The teacher's own detection loss on the batch, every log period (1 here).
    assert all(math.isfinite(m["teacher/total_loss"]) and m["teacher/loss_class"] > 0 for m in train_rows)

    exported = out / "model_student_final.pth"
    assert exported.is_file()
    distilled = json.loads((out / "kitti_report.json").read_text())["results"]

    again = workdir / f"{family}_student_eval"
    _run([
        "tools/lazyconfig_train_net.py", "--config-file", f"configs/clock_distill/{family}_student_kitti_synthetic.py",
        "--eval-only", f"train.init_checkpoint={exported}", f"train.output_dir={again}", "dataloader.test.num_workers=0",
    ], data)
    alone = json.loads((again / "kitti_report.json").read_text())["results"]
    assert alone == distilled

    # tools/visualize.py on the same run: every mode, teacher, student alone and distilled student.
    vis = workdir / f"{family}_vis"
    proc = _run([
        "tools/visualize.py", "--config-file", f"configs/clock_distill/{family}_clockdistill_kitti_synthetic.py",
        "--weights", str(exported), "--baseline-weights", str(exported), "--dataset", "kitti_synthetic_val",
        "--num-images", "1", "--score-thresh", "0", "--out", str(vis), f"model.teacher_weights={workdir}/{family}_teacher.pth",
    ], data)
    from PIL import Image

    pngs = sorted(vis.glob("*.png"))
    assert sorted(p.name.split("_", 1)[1] for p in pngs) == ["attention.png", "memory.png", "predictions.png", "queries.png"]
    levels = 1 if family == "dab_detr" else 3
    panels = {"predictions": 4, "queries": 1, "attention": 3, "memory": levels * 4}
    for p in pngs:
        w, h = Image.open(p).size
        assert (w, h) == (160, 48 * panels[p.stem.split("_", 1)[1]]), (p.name, w, h)
        assert f"wrote {p}" in proc.stdout


def _worker(out_path, root):
    """In one subprocess: (1) every distillation config but CLoCKDistill's builds its Distiller
    and trains one step; (2) for each family distilled by the CLI test, the Distiller loaded from
    its model_final.pth (eval mode) and the plain student loaded from model_student_final.pth
    predict on the val images; their detections are compared bit for bit."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate
    from detectron2.utils.events import EventStorage

    from clock_distill.distill import Distiller
    from clock_distill.engine import DETRTrainer

    summary = {"one_step": {}, "predictions": {}}
    for cfg_path in sorted((REPO / "configs" / "clock_distill").glob("*_kitti_synthetic.py")):
        name = cfg_path.stem
        family = next(f for f in FAMILIES if name.startswith(f + "_"))
        method = name[len(family) + 1 : -len("_kitti_synthetic")]
        if method in ("teacher", "student", "clockdistill"):
            continue
        torch.manual_seed(0)
        cfg = LazyConfig.load(str(cfg_path))
        cfg.model.teacher_weights = f"{root}/{family}_teacher.pth"
        cfg.dataloader.train.total_batch_size = 2
        cfg.dataloader.train.num_workers = 0
        model = instantiate(cfg.model)
        assert isinstance(model, Distiller)
        model.train()
        cfg.optimizer.params.model = model
        trainer = DETRTrainer(model, instantiate(cfg.dataloader.train), instantiate(cfg.optimizer), {"max_norm": 0.1})
        with EventStorage(0) as storage:
            trainer.iter = 0
            trainer.run_step()
            summary["one_step"][name] = {k: v.latest() for k, v in storage.histories().items() if k.startswith("loss_")}
        model.check_teacher(trainer.optimizer)

    for family in FAMILIES:
        out = Path(root) / f"{family}_distill"
        if not (out / "model_student_final.pth").is_file():
            continue
        cfg = LazyConfig.load(str(REPO / f"configs/clock_distill/{family}_clockdistill_kitti_synthetic.py"))
        cfg.model.teacher_weights = f"{root}/{family}_teacher.pth"
        cfg.dataloader.test.num_workers = 0
        distiller = instantiate(cfg.model).eval()
        DetectionCheckpointer(distiller).load(str(out / "model_final.pth"))
        student_cfg = LazyConfig.load(str(REPO / f"configs/clock_distill/{family}_student_kitti_synthetic.py"))
        student = instantiate(student_cfg.model).eval()
        DetectionCheckpointer(student).load(str(out / "model_student_final.pth"))
        diffs, count = [], 0
        with torch.no_grad():
            for batch in instantiate(cfg.dataloader.test):
                a, b = distiller(batch)[0]["instances"], student(batch)[0]["instances"]
                count += len(a)
                diffs.append(bool(torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor) and torch.equal(a.scores, b.scores)
                                  and torch.equal(a.pred_classes, b.pred_classes)))
        summary["predictions"][family] = {"identical": diffs, "num_detections": count}
    Path(out_path).write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def worker_summary(workdir):
    out = workdir / "worker.json"
    _run([__file__, str(out), str(workdir)], workdir / "datasets", timeout=600)
    return json.loads(out.read_text())


@pytest.mark.slow
def test_baseline_configs_train_one_step(worker_summary):
    summary = worker_summary["one_step"]
    for family in FAMILIES:
        kd = summary[f"{family}_kd_detr_kitti_synthetic"]
        assert {"loss_kd_detr_cls", "loss_kd_detr_bbox", "loss_kd_detr_giou"} <= set(kd), kd
        assert "loss_lcmd" not in kd
        fk = summary[f"{family}_feature_kd_kitti_synthetic"]
        assert "loss_feature_kd" in fk and not any(k.startswith("loss_tcld") for k in fk), fk
        for losses in (kd, fk):
            assert all(math.isfinite(v) for v in losses.values()), losses


@pytest.mark.slow
def test_exported_student_predicts_exactly_as_the_distiller(worker_summary):
    """The KITTI tables of the CLI test are equal but near 0 after 3 steps; the detections
    themselves (100 per image) are the stronger check."""
    preds = worker_summary["predictions"]
    assert sorted(preds) == sorted(FAMILIES), "the CLI test must run first (same module)"
    for family, p in preds.items():
        assert p["num_detections"] > 0 and p["identical"] and all(p["identical"]), (family, p)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
