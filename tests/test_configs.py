"""Every LazyConfig under configs/ (but configs/common) loads and builds its model; the synthetic
config trains one step; the paper-scale configs have the paper's recipe and epoch arithmetic.

Data configs register datasets under ``$DETECTRON2_DATASETS`` when they are loaded, and
detectron2's catalogs are process-global, so all loading happens in one subprocess (this file
run as a script) with ``DETECTRON2_DATASETS`` pointing at a temporary root. It writes a JSON
summary that the tests below read.
"""

import json
import math
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
SYNTHETIC_CONFIGS = [
    "deformable_detr/deformable_detr_r18_kitti_synthetic.py",
    "dab_detr/dab_detr_r18_kitti_synthetic.py",
    "dino/dino_r18_kitti_synthetic.py",
]
FAMILY_CLASS = {"deformable_detr": "DeformableDETR", "dab_detr": "DABDETR", "dino": "DINO"}
DISTILL_METHODS = ("clockdistill", "kd_detr", "feature_kd")


def family_of(name):
    """The DETR family of a config: its folder, or for configs/clock_distill/ its file prefix."""
    top, stem = name.split("/")[0], Path(name).stem
    if top == "clock_distill":
        return next(f for f in FAMILY_CLASS if stem.startswith(f + "_"))
    return top


def is_distiller_config(name):
    """A teacher-student config (its model is a Distiller: tests/test_distill_configs.py)."""
    return name.startswith("clock_distill/") and any(f"_{m}_" in Path(name).stem + "_" for m in DISTILL_METHODS)

KITTI_TRAIN_IMAGES = 3712
COCO_TRAIN_IMAGES = 117266
BATCH = 16
# ResNet-50/101 models are built on the meta device (every constructor runs, no weight
# initialization: 0.2 s instead of 0.8 s each); this one is built for real, on the CPU.
REAL_R50_CONFIG = "deformable_detr/deformable_detr_r50_kitti_50ep_two_stage.py"


def all_configs():
    """Config files relative to configs/, excluding configs/common (building blocks) and the
    distillation configs (their own tests)."""
    return sorted(
        str(p.relative_to(CONFIG_DIR))
        for p in CONFIG_DIR.rglob("*.py")
        if p.relative_to(CONFIG_DIR).parts[0] != "common" and p.name != "__init__.py"
        and not is_distiller_config(str(p.relative_to(CONFIG_DIR)))
    )


# name -> (dataset, epochs, decay epoch, num_classes, with_box_refine, as_two_stage)
PAPER_CONFIGS = {
    "deformable_detr/deformable_detr_r50_kitti_50ep.py": ("kitti", 50, 40, 3, False, False),
    "deformable_detr/deformable_detr_r50_kitti_50ep_box_refine.py": ("kitti", 50, 40, 3, True, False),
    "deformable_detr/deformable_detr_r50_kitti_50ep_two_stage.py": ("kitti", 50, 40, 3, True, True),
    "deformable_detr/deformable_detr_r50_coco_50ep.py": ("coco", 50, 40, 80, False, False),
    "deformable_detr/deformable_detr_r50_coco_12ep.py": ("coco", 12, 11, 80, False, False),
}
# DAB-DETR and DINO: name -> (dataset, epochs, decay epoch, num_classes, num_queries, num_levels)
FAMILY_PAPER_CONFIGS = {
    "dab_detr/dab_detr_r50_kitti_50ep.py": ("kitti", 50, 40, 3, 300, 1),
    "dab_detr/dab_detr_r50_coco_50ep.py": ("coco", 50, 40, 80, 300, 1),
    "dino/dino_r50_kitti_12ep.py": ("kitti", 12, 11, 3, 900, 4),
    "dino/dino_r50_kitti_24ep.py": ("kitti", 24, 20, 3, 900, 4),
    "dino/dino_r50_coco_12ep.py": ("coco", 12, 11, 80, 900, 4),
    "dino/dino_r50_coco_24ep.py": ("coco", 24, 20, 80, 900, 4),
}


# ---------------------------------------------------------------------------------- worker
def _max_depth(node):
    """The largest integer ``depth`` (ResNet) anywhere in a model config, 0 if none."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        own = node.get("depth") if isinstance(node.get("depth"), int) else 0
        return max([own] + [_max_depth(v) for v in node.values()])
    if isinstance(node, (list, tuple)):
        return max([0] + [_max_depth(v) for v in node])
    return 0


def _summarize_config(name):
    """Load one config, build its model (and optimizer / lr schedule when present)."""
    import torch
    from detectron2.config import LazyConfig, instantiate
    from omegaconf import OmegaConf

    cfg = LazyConfig.load(str(CONFIG_DIR / name))
    out = {"keys": sorted(cfg.keys())}
    meta = _max_depth(cfg.model) >= 50 and name != REAL_R50_CONFIG
    with torch.device("meta" if meta else "cpu"):
        model = instantiate(cfg.model)

    def attr(path):
        obj = model
        for part in path.split("."):
            obj = obj[int(part)] if part.lstrip("-").isdigit() else getattr(obj, part, None)
            if obj is None:
                return None
        return obj

    out["model"] = {
        "class": type(model).__name__,
        "is_module": isinstance(model, torch.nn.Module),
        "num_classes": attr("num_classes"),
        "criterion_num_classes": attr("criterion.num_classes"),
        "class_embed_out": attr("class_embed.-1.out_features"),
        "num_queries": attr("num_queries"),
        "embed_dim": attr("embed_dim"),
        "num_levels": attr("num_levels"),
        "num_decoder_layers": len(model.decoder_layers) if hasattr(model, "decoder_layers") else None,
        "with_box_refine": attr("with_box_refine"),
        "as_two_stage": attr("as_two_stage"),
        "dn_number": attr("dn_number"),
        "decoder_norm": type(attr("decoder_norm")).__name__,
        "num_params": sum(p.numel() for p in model.parameters()),
        "backbone_depth": OmegaConf.select(cfg, "model.backbone.depth"),
        "backbone_norm": OmegaConf.select(cfg, "model.backbone.norm"),
        "backbone_freeze_at": OmegaConf.select(cfg, "model.backbone.freeze_at"),
        "device": str(next(model.parameters()).device),
        "all_finite": None if meta else all(torch.isfinite(p).all().item() for p in model.parameters()),
    }
    if "optimizer" in cfg:
        cfg.optimizer.params.model = model
        opt = instantiate(cfg.optimizer)
        backbone_ids = {id(p) for p in model.backbone.parameters()}
        proj_ids = {id(p) for n, p in model.named_parameters() if ".sampling_offsets." in n or n.startswith("reference_points.")}
        lrs = {"backbone": set(), "linear_proj": set(), "other": set()}
        covered = set()
        for g in opt.param_groups:
            for p in g["params"]:
                kind = "backbone" if id(p) in backbone_ids else "linear_proj" if id(p) in proj_ids else "other"
                lrs[kind].add(g["lr"])
                covered.add(id(p))
        trainable = {id(p) for p in model.parameters() if p.requires_grad}
        out["optimizer"] = {
            "class": type(opt).__name__,
            "lr": cfg.optimizer.lr,
            "betas": list(cfg.optimizer.betas),
            "weight_decay": cfg.optimizer.weight_decay,
            "backbone_lr_factor": cfg.optimizer.params.backbone_lr_factor,
            "backbone_lrs": sorted(lrs["backbone"]),
            "other_lrs": sorted(lrs["other"]),
            "linear_proj_lrs": sorted(lrs["linear_proj"]),
            "covers_all_trainable": covered == trainable,
        }
    if "lr_multiplier" in cfg:
        sched = instantiate(cfg.lr_multiplier)
        max_iter = cfg.train.max_iter
        decay = cfg.lr_multiplier.scheduler.milestones[0]
        out["schedule"] = {
            "milestones": list(cfg.lr_multiplier.scheduler.milestones),
            "values": list(cfg.lr_multiplier.scheduler["values"]),
            "warmup_length": cfg.lr_multiplier.warmup_length,
            "at_start": sched(0.0),
            "before_decay": sched((decay - 1) / max_iter),
            "at_decay": sched(decay / max_iter),
            "at_end": sched((max_iter - 1) / max_iter),
        }
    if "train" in cfg:
        out["train"] = OmegaConf.to_container(cfg.train, resolve=True)
    if "dataloader" in cfg:
        out["dataloader"] = {
            "train_batch": cfg.dataloader.train.total_batch_size,
            "train_names": OmegaConf.to_container(cfg.dataloader.train.dataset, resolve=True)["names"],
            "test_names": OmegaConf.to_container(cfg.dataloader.test.dataset, resolve=True)["names"],
        }
    return out


def _train_one_step(data_root, config):
    """A synthetic config: one training step on 2 images, then inference on one image."""
    import numpy as np
    import torch
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetCatalog
    from detectron2.utils.events import EventStorage

    from clock_distill.data.synthetic import generate_synthetic_kitti
    from clock_distill.engine import DETRTrainer

    if not (Path(data_root) / "kitti_synthetic").exists():
        generate_synthetic_kitti(Path(data_root) / "kitti_synthetic", num_images=4, width=160, height=48)
    torch.manual_seed(0)
    np.random.seed(0)
    cfg = LazyConfig.load(str(CONFIG_DIR / config))
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.train.num_workers = 0
    cfg.train.device = "cpu"
    model = instantiate(cfg.model).to(cfg.train.device)
    model.train()
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    loader = instantiate(cfg.dataloader.train)
    trainer = DETRTrainer(
        model, loader, optimizer,
        clip_grad_params=cfg.train.clip_grad.params if cfg.train.clip_grad.enabled else None,
        amp=cfg.train.amp.enabled,
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with EventStorage(0) as storage:
        trainer.iter = 0
        trainer.run_step()
        losses = {k: v.latest() for k, v in storage.histories().items() if "loss" in k}
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    unchanged = [n for n, p in model.named_parameters() if p.requires_grad and n not in changed]

    model.eval()
    mapper = instantiate(cfg.dataloader.test.mapper)
    record = DatasetCatalog.get("kitti_synthetic_train")[0]
    inputs = mapper(record)
    with torch.no_grad():
        inst = model([inputs])[0]["instances"]
    boxes = inst.pred_boxes.tensor
    return {
        "num_train_records": len(DatasetCatalog.get("kitti_synthetic_train")),
        "losses": losses,
        "params_changed": len(changed),
        "params_unchanged": unchanged,
        "params_finite": all(torch.isfinite(p).all().item() for p in model.parameters()),
        "input_image_size": list(inputs["image"].shape[-2:]),
        "original_size": [record["height"], record["width"]],
        "instances_image_size": list(inst.image_size),
        "num_instances": len(inst),
        "boxes_min": boxes.min().item() if len(inst) else 0.0,
        "boxes_max_x": boxes[:, 0::2].max().item() if len(inst) else 0.0,
        "boxes_max_y": boxes[:, 1::2].max().item() if len(inst) else 0.0,
        "classes": sorted(set(inst.pred_classes.tolist())),
    }


def _worker(out_path, data_root):
    summary = {"configs": {}, "train_step": {}}
    for name in all_configs():
        try:
            summary["configs"][name] = _summarize_config(name)
        except Exception:
            summary["configs"][name] = {"error": traceback.format_exc()}
    for name in SYNTHETIC_CONFIGS:
        try:
            summary["train_step"][name] = _train_one_step(data_root, name)
        except Exception:
            summary["train_step"][name] = {"error": traceback.format_exc()}
    Path(out_path).write_text(json.dumps(summary, indent=1, default=str))


# ----------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("configs")
    data_root = tmp / "datasets"
    data_root.mkdir()
    out = tmp / "summary.json"
    # One intra-op thread: on a busy 2-core machine more threads make this 4x slower, not faster.
    env = dict(os.environ, DETECTRON2_DATASETS=str(data_root), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, __file__, str(out), str(data_root)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"config worker failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text())


def test_config_list_is_complete():
    names = all_configs()
    for name in SYNTHETIC_CONFIGS:
        assert name in names
    for name in [*PAPER_CONFIGS, *FAMILY_PAPER_CONFIGS]:
        assert name in names, f"missing paper-scale config {name}"
    assert not any(n.startswith("common/") for n in names)


@pytest.mark.parametrize("name", all_configs())
def test_config_loads_and_model_instantiates(summary, name):
    s = summary["configs"][name]
    assert "error" not in s, s.get("error")
    assert "model" in s["keys"]
    m = s["model"]
    assert m["is_module"] and m["num_params"] > 0
    assert m["class"] == FAMILY_CLASS[family_of(name)]
    if m["num_classes"] is not None and m["criterion_num_classes"] is not None:
        assert m["num_classes"] == m["criterion_num_classes"] == m["class_embed_out"]
    assert m["all_finite"] is (None if m["device"] == "meta" else True)
    if "/models/" not in name:
        # An experiment: everything the training script needs.
        assert set(s["keys"]) >= {"model", "dataloader", "optimizer", "lr_multiplier", "train"}
        assert s["optimizer"]["covers_all_trainable"]
        assert s["train"]["output_dir"].startswith("./output/")


def test_a_paper_scale_model_is_built_for_real(summary):
    m = summary["configs"][REAL_R50_CONFIG]["model"]
    assert m["device"] == "cpu" and m["all_finite"]


def test_output_dirs_are_distinct(summary):
    dirs = [s["train"]["output_dir"] for s in summary["configs"].values() if "train" in s]
    assert len(dirs) == len(set(dirs)), dirs


@pytest.mark.parametrize("name", sorted(PAPER_CONFIGS))
def test_paper_scale_recipe(summary, name):
    dataset, epochs, decay_epoch, num_classes, refine, two_stage = PAPER_CONFIGS[name]
    s = summary["configs"][name]
    assert "error" not in s, s.get("error")
    num_images = KITTI_TRAIN_IMAGES if dataset == "kitti" else COCO_TRAIN_IMAGES

    m = s["model"]
    assert m["num_classes"] == num_classes
    assert (m["with_box_refine"], m["as_two_stage"]) == (refine, two_stage)
    # Deformable DETR's code freezes the stem and layer1 (detectron2: freeze_at=2), FrozenBN.
    assert (m["backbone_depth"], m["backbone_norm"], m["backbone_freeze_at"]) == (50, "FrozenBN", 2)
    assert (m["num_queries"], m["embed_dim"], m["num_levels"], m["num_decoder_layers"]) == (300, 256, 4, 6)
    # Deformable DETR R50 has ~40M parameters (paper, Table 1); "++" ~41M.
    assert 39e6 < m["num_params"] < 42e6

    o = s["optimizer"]
    assert o["class"] == "AdamW" and o["lr"] == 2e-4 and o["weight_decay"] == 1e-4
    assert o["backbone_lr_factor"] == 0.1
    assert o["backbone_lrs"] == [pytest.approx(2e-5)]
    assert o["other_lrs"] == [pytest.approx(2e-4)]
    # lr_linear_proj_mult = 0.1: sampling offsets and reference points.
    assert o["linear_proj_lrs"] == [pytest.approx(2e-5)]

    t = s["train"]
    assert t["clip_grad"]["enabled"] and t["clip_grad"]["params"]["max_norm"] == 0.1
    assert s["dataloader"]["train_batch"] == BATCH
    prefix = "kitti" if dataset == "kitti" else "coco_2017"
    assert s["dataloader"]["train_names"] == f"{prefix}_train"
    assert s["dataloader"]["test_names"] == f"{prefix}_val"

    # Epoch arithmetic.
    iters_per_epoch = num_images / BATCH
    assert t["max_iter"] == round(epochs * iters_per_epoch)
    sch = s["schedule"]
    assert sch["milestones"] == [round(decay_epoch * iters_per_epoch), t["max_iter"]]
    assert sch["values"] == [1.0, 0.1] and sch["warmup_length"] == 0
    assert sch["at_start"] == pytest.approx(1.0) and sch["before_decay"] == pytest.approx(1.0)
    assert sch["at_decay"] == pytest.approx(0.1) and sch["at_end"] == pytest.approx(0.1)

    # Evaluation about every 5 epochs, checkpoints at most as far apart; no periodic evaluation
    # just before the final one (that would evaluate twice in a row).
    eval_epochs = t["eval_period"] / iters_per_epoch
    assert 4 <= eval_epochs <= 6, eval_epochs
    assert 0 < t["checkpointer"]["period"] <= t["eval_period"]
    last_periodic = (t["max_iter"] // t["eval_period"]) * t["eval_period"]
    assert last_periodic == t["max_iter"] or t["max_iter"] - last_periodic >= iters_per_epoch
    assert t["output_dir"] == "./output/" + Path(name).stem
    assert t["init_checkpoint"].endswith("R-50.pkl")


@pytest.mark.parametrize("name", sorted(FAMILY_PAPER_CONFIGS))
def test_dab_and_dino_paper_scale_recipe(summary, name):
    """DAB-DETR 50 epochs, DINO 12 and 24 epochs: AdamW lr 1e-4, backbone x0.1, clip 0.1, batch 16."""
    dataset, epochs, decay_epoch, num_classes, num_queries, num_levels = FAMILY_PAPER_CONFIGS[name]
    s = summary["configs"][name]
    assert "error" not in s, s.get("error")
    num_images = KITTI_TRAIN_IMAGES if dataset == "kitti" else COCO_TRAIN_IMAGES
    m = s["model"]
    assert m["num_classes"] == num_classes
    assert (m["num_queries"], m["embed_dim"], m["num_levels"], m["num_decoder_layers"]) == (num_queries, 256, num_levels, 6)
    assert (m["backbone_depth"], m["backbone_norm"]) == (50, "FrozenBN")
    assert m["decoder_norm"] == "LayerNorm"
    if name.startswith("dino/"):
        assert m["dn_number"] == 100
    o = s["optimizer"]
    assert o["class"] == "AdamW" and o["lr"] == 1e-4 and o["weight_decay"] == 1e-4
    assert o["backbone_lrs"] == [pytest.approx(1e-5)] and o["other_lrs"] == [pytest.approx(1e-4)]
    # DINO's lr_linear_proj_mult = 0.1 on the sampling offsets; DAB-DETR has none.
    assert o["linear_proj_lrs"] == ([pytest.approx(1e-5)] if name.startswith("dino/") else [])
    t = s["train"]
    assert t["clip_grad"]["enabled"] and t["clip_grad"]["params"]["max_norm"] == 0.1
    assert s["dataloader"]["train_batch"] == BATCH
    iters_per_epoch = num_images / BATCH
    assert t["max_iter"] == round(epochs * iters_per_epoch)
    assert s["schedule"]["milestones"] == [round(decay_epoch * iters_per_epoch), t["max_iter"]]
    assert s["schedule"]["at_decay"] == pytest.approx(0.1) and s["schedule"]["before_decay"] == pytest.approx(1.0)
    assert 0 < t["checkpointer"]["period"] <= t["eval_period"] <= t["max_iter"]
    last_periodic = (t["max_iter"] // t["eval_period"]) * t["eval_period"]
    assert last_periodic == t["max_iter"] or t["max_iter"] - last_periodic >= iters_per_epoch
    assert t["output_dir"] == "./output/" + Path(name).stem
    assert t["init_checkpoint"].endswith("R-50.pkl")


def test_paper_scale_epoch_numbers(summary):
    """The numbers written in the configs' comments."""
    c = summary["configs"]
    kitti = c["deformable_detr/deformable_detr_r50_kitti_50ep.py"]
    assert (kitti["train"]["max_iter"], kitti["schedule"]["milestones"][0], kitti["train"]["eval_period"]) == (
        11600, 9280, 1160)
    coco50 = c["deformable_detr/deformable_detr_r50_coco_50ep.py"]
    assert (coco50["train"]["max_iter"], coco50["schedule"]["milestones"][0], coco50["train"]["eval_period"]) == (
        366456, 293165, 36646)
    assert coco50["train"]["checkpointer"]["period"] == 7329
    coco12 = c["deformable_detr/deformable_detr_r50_coco_12ep.py"]
    assert (coco12["train"]["max_iter"], coco12["schedule"]["milestones"][0], coco12["train"]["eval_period"]) == (
        87950, 80620, 36646)


@pytest.mark.parametrize("name", SYNTHETIC_CONFIGS)
def test_synthetic_config_trains_one_step(summary, name):
    r = summary["train_step"][name]
    assert "error" not in r, r.get("error")
    assert r["num_train_records"] == 4
    losses = r["losses"]
    expected = ["loss_class", "loss_bbox", "loss_giou", "loss_class_0"]
    expected += {"deformable_detr": ["loss_class_enc"], "dab_detr": [], "dino": ["loss_class_enc", "loss_class_dn"]}[
        name.split("/")[0]]
    for key in expected:
        assert key in losses, sorted(losses)
    assert all(math.isfinite(v) for v in losses.values()), losses
    assert r["params_finite"]
    # AdamW moves every parameter that got a gradient; with all parameters used, that is all.
    assert r["params_changed"] > 0
    # DAB-DETR's queries start with zero content, so the first layer's self-attention output,
    # and the input of its norm1, is a constant (zero) vector at step 1: norm1's scale has a zero
    # gradient until the attention biases move.
    expected_unchanged = ["decoder_layers.0.norm1.weight"] if name.startswith("dab_detr/") else []
    assert r["params_unchanged"] == expected_unchanged, r["params_unchanged"]


@pytest.mark.parametrize("name", SYNTHETIC_CONFIGS)
def test_synthetic_config_inference_at_original_size(summary, name):
    r = summary["train_step"][name]
    assert "error" not in r, r.get("error")
    assert r["original_size"] == [48, 160]
    assert r["input_image_size"] != r["original_size"]  # the test mapper resized it (short edge 192)
    assert r["instances_image_size"] == [48, 160]
    assert 0 < r["num_instances"] <= 100
    assert r["boxes_min"] >= 0 and r["boxes_max_x"] <= 160 and r["boxes_max_y"] <= 48
    assert set(r["classes"]) <= {0, 1, 2}


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
