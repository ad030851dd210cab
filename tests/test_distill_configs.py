"""The distillation configs (configs/clock_distill/*): each names a teacher config that exists and
whose output is its teacher_weights, shares its schedule with the student-alone config, and
pairs a teacher and a student of the same classes; the synthetic teachers are much larger than
their students. Loading happens in a subprocess (data configs register datasets at load time).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs" / "clock_distill"
FAMILIES = ("dino", "deformable_detr", "dab_detr")
METHODS = ("clockdistill", "kd_detr", "feature_kd")


def distill_configs():
    return sorted(p.name for p in CONFIG_DIR.glob("*.py") if any(f"_{m}" in p.stem for m in METHODS))


def _student_config(name):
    """The student-alone config whose schedule a distillation config shares."""
    stem = Path(name).stem
    family = next(f for f in FAMILIES if stem.startswith(f + "_"))
    if stem.endswith("_kitti_synthetic"):
        return f"clock_distill/{family}_student_kitti_synthetic.py"
    if "_r50_r18_kitti_" in stem:
        return f"clock_distill/{family}_r18_student_kitti.py"
    coco = {"dino": "dino_r50_coco_12ep", "deformable_detr": "deformable_detr_r50_coco_50ep", "dab_detr": "dab_detr_r50_coco_50ep"}
    return f"{family}/{coco[family]}.py"


def _worker(out_path):
    from detectron2.config import LazyConfig, instantiate
    from omegaconf import OmegaConf

    from clock_distill.distill import Distiller

    def plain(node):
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    summary = {}
    for name in distill_configs():
        cfg = LazyConfig.load(str(CONFIG_DIR / name))
        m = cfg.model
        teacher_cfg = LazyConfig.load(str(REPO / m.teacher_config))
        student_cfg = LazyConfig.load(str(REPO / "configs" / _student_config(name)))
        s = {
            "target": m._target_ is Distiller,
            "teacher_config_exists": (REPO / m.teacher_config).is_file(),
            "teacher_weights": m.teacher_weights,
            "teacher_output": teacher_cfg.train.output_dir.rstrip("/") + "/model_final.pth",
            "teacher_model_equal": plain(teacher_cfg.model) == plain(m.teacher),
            "student_model_equal": plain(student_cfg.model) == plain(m.student),
            "same_schedule": all(
                plain(cfg[k]) == plain(student_cfg[k]) for k in ("dataloader", "optimizer", "lr_multiplier")
            ) and cfg.train.max_iter == student_cfg.train.max_iter and cfg.train.init_checkpoint == student_cfg.train.init_checkpoint,
            "classes": [instantiate(m.student_classes), instantiate(m.teacher_classes)],
            "student_depth": m.student.backbone.depth,
            "teacher_depth": m.teacher.backbone.depth,
            "output_dir": cfg.train.output_dir,
            "warmup": plain(cfg.train.distill)["warmup_iters"],
            "losses": [k for k in ("memory_loss", "logit_loss", "feature_loss") if m.get(k) is not None],
        }
        if name.endswith("_kitti_synthetic.py"):
            count = lambda model: sum(p.numel() for p in instantiate(model).parameters())  # noqa: E731
            s["params"] = [count(m.student), count(m.teacher)]
        summary[name] = s
    Path(out_path).write_text(json.dumps(summary, default=str))


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill_configs")
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, __file__, str(tmp / "s.json")], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads((tmp / "s.json").read_text())


def test_every_family_has_every_method():
    names = distill_configs()
    for f in FAMILIES:
        for m in METHODS:
            assert f"{f}_{m}_kitti_synthetic.py" in names
        assert f"{f}_r50_r18_kitti_clockdistill.py" in names
        assert f"{f}_r101_r50_coco_clockdistill.py" in names
        for role in ("teacher", "student"):
            assert (CONFIG_DIR / f"{f}_{role}_kitti_synthetic.py").is_file()


@pytest.mark.parametrize("name", distill_configs())
def test_distill_config(summary, name):
    s = summary[name]
    assert s["target"] and s["teacher_config_exists"]
    assert s["teacher_weights"] == s["teacher_output"]
    assert s["teacher_model_equal"] and s["student_model_equal"]
    assert s["same_schedule"]
    assert s["classes"][0] == s["classes"][1] and len(s["classes"][0]) in (3, 80)
    assert s["output_dir"].startswith("./output/clock_distill/") and Path(name).stem in s["output_dir"]
    assert s["warmup"] > 0
    method = next(m for m in METHODS if f"_{m}" in name)
    expected = {"clockdistill": ["memory_loss", "logit_loss"], "kd_detr": ["logit_loss"], "feature_kd": ["feature_loss"]}
    assert s["losses"] == expected[method]
    if "params" in s:
        student, teacher = s["params"]
        assert teacher > 3 * student, s["params"]  # the teacher is the bigger model
    else:
        assert (s["teacher_depth"], s["student_depth"]) in {(50, 18), (101, 50)}


if __name__ == "__main__":
    _worker(sys.argv[1])
