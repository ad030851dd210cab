"""The teacher-student meta-architecture: a frozen teacher DETR, a student DETR and the
distillation losses, as one detectron2 model that the default trainer trains.

The distiller is a client of the DETR interface only (``preprocess_image``, ``encode``,
``build_query_groups``, ``queries_at``, ``decode``, ``losses``): no forward hooks, no rewritten
forwards. In training, per batch:

1. the student encodes the images and builds its own query groups (matching, denoising);
2. the teacher, under ``torch.no_grad()``, encodes the same images; the distillation points
   (GT targets for TCLD, or KD-DETR's points) become a query group on each model;
3. the student decodes its groups and the points' groups in one call (the points are isolated
   by the attention mask, so the student's own outputs are unchanged); the teacher decodes the
   points' groups;
4. the loss dict: the student's detection losses, plus ``loss_lcmd`` (memory), ``loss_feature_kd``
   (neck features, the baseline) and ``loss_tcld_{cls,bbox,giou}`` (``loss_kd_detr_*`` for
   KD-DETR's points), each times the warm-up factor ``kd_scale`` set by
   :class:`~clock_distill.distill.hooks.DistillationHook`.

In eval mode the distiller *is* the student: ``forward`` returns the student's predictions.

The teacher is deliberately not a submodule (mmdetection's knowledge-distillation detectors do
the same): it is not in ``parameters()`` (so never in the optimizer, never reduced by DDP, never
clipped), not in ``state_dict()`` (so checkpoints hold the student and the adapters, and an
ImageNet ``train.init_checkpoint`` matched by key suffix cannot overwrite the teacher's backbone),
and ``train()`` does not reach it, so it stays in eval mode. ``to()``/``cuda()``/``half()`` still
move it (``_apply``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..modeling.criterion import mean_count_over_ranks
from .feature_loss import FeatureDistillLoss, flatten_levels
from .logit_loss import LogitDistillLoss
from .memory_loss import MemoryDistillLoss
from .target_queries import point_query_groups

__all__ = ["Distiller", "TeacherCheckpointError", "load_teacher_weights", "dataset_classes", "state_fingerprint"]

logger = logging.getLogger(__name__)


class TeacherCheckpointError(RuntimeError):
    """The teacher checkpoint does not fit the teacher model (keys, shapes, classes)."""


def dataset_classes(names) -> List[str]:
    """``thing_classes`` of a registered detectron2 dataset (the first, for a list of names): for
    configs, ``student_classes=L(dataset_classes)(names=...)``."""
    from detectron2.data import MetadataCatalog

    name = names if isinstance(names, str) else names[0]
    classes = MetadataCatalog.get(name).get("thing_classes", None)
    if classes is None:
        raise KeyError(f"dataset {name!r} has no thing_classes: is it registered?")
    return list(classes)


def state_fingerprint(module: nn.Module) -> str:
    """sha256 over every parameter and buffer (names, dtypes, shapes, bytes): equal iff bit-identical."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        # reshape: 0-dim tensors (e.g. BatchNorm's num_batches_tracked) cannot be viewed as bytes.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _list(keys: Sequence, limit: int = 20) -> str:
    shown = "\n    ".join(str(k) for k in list(keys)[:limit])
    more = f"\n    ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"\n    {shown}{more}"


def load_teacher_weights(teacher: nn.Module, path: str, teacher_config: str = "", expected_classes=None,
                         role: str = "teacher") -> None:
    """Load ``path`` into ``teacher`` strictly: every key present, none extra, every shape equal.
    ``role`` names the model in the messages; any role but "teacher" also accepts a whole
    distillation checkpoint and takes its ``student.*`` keys.

    Raises:
        FileNotFoundError: no path or no file; names the config that trains the teacher.
        TeacherCheckpointError: missing, unexpected or shape-mismatched keys (listed), or class
            names stored in the checkpoint (``thing_classes``) that differ from ``expected_classes``.
    """
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.utils.file_io import PathManager

    how = (
        f"\n  Train the teacher first: python tools/lazyconfig_train_net.py --config-file {teacher_config}"
        if teacher_config else ""
    )
    if not path:
        raise FileNotFoundError("model.teacher_weights is empty: the distiller needs a trained teacher checkpoint." + how)
    local = PathManager.get_local_path(path)
    if not os.path.isfile(local):
        raise FileNotFoundError(f"teacher checkpoint not found: {path}" + how)
    ckpt = DetectionCheckpointer(teacher)._load_file(local)
    state = {k: torch.as_tensor(v) for k, v in ckpt["model"].items()}
    if state and all(k.startswith("module.") for k in state):  # saved from a DDP wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    own = teacher.state_dict()
    if role != "teacher" and any(k.startswith("student.") for k in state) and not any(k.startswith("student.") for k in own):
        state = {k[len("student."):]: v for k, v in state.items() if k.startswith("student.")}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        what = "the model" if role == "model" else f"the {role} model"
        msg = [f"{role} checkpoint {path} does not match {what} ({type(teacher).__name__}):"]
        if missing:
            msg.append(f"  {len(missing)} missing keys:" + _list(missing))
        if unexpected:
            msg.append(f"  {len(unexpected)} unexpected keys:" + _list(unexpected))
        if mismatched:
            msg.append(f"  {len(mismatched)} keys with other shapes:" + _list(mismatched))
        if role == "teacher" and any(k.startswith("student.") for k in unexpected):
            msg.append("  This is a distillation checkpoint; a distilled student is exported as model_student_final.pth.")
        if role == "teacher":
            msg.append("  Is model.teacher the config that trained this checkpoint?" + (f" ({teacher_config})" if teacher_config else ""))
        raise TeacherCheckpointError("\n".join(msg))
    stored = ckpt.get("thing_classes")
    if stored is not None and expected_classes is not None and list(stored) != list(expected_classes):
        raise TeacherCheckpointError(
            f"{role} checkpoint {path} was trained on classes {list(stored)}, the student on {list(expected_classes)}"
        )
    teacher.load_state_dict(state, strict=True)


class Distiller(nn.Module):
    """Teacher-student distillation of DETRs (CLoCKDistill: LCMD + TCLD; KD-DETR and neck-feature
    KD as baselines), a detectron2 meta-architecture.

    Args:
        student: a DETRBase (trained).
        teacher: a DETRBase of the same classes (frozen, loaded from ``teacher_weights``); it may
            differ from the student in depth, width, layer and query counts. LCMD and feature KD
            need the same levels at the same strides.
        teacher_weights: the teacher's checkpoint (``model.teacher_weights=PATH``), loaded strictly.
        memory_loss: LCMD (:class:`MemoryDistillLoss`) or None.
        logit_loss: TCLD's logit/box loss (:class:`LogitDistillLoss`) or None; needs ``distill_queries``.
        distill_queries: where the distillation queries come from: :class:`TargetQueries` (TCLD)
            or :class:`KDDETRQueries` (KD-DETR).
        feature_loss: the neck-feature KD baseline (:class:`FeatureDistillLoss`) or None.
        teacher_config: the config file that trains the teacher, named in errors.
        student_classes, teacher_classes: class names; when both are given they must be equal.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_weights: str,
        memory_loss: Optional[MemoryDistillLoss] = None,
        logit_loss: Optional[LogitDistillLoss] = None,
        distill_queries=None,
        feature_loss: Optional[FeatureDistillLoss] = None,
        teacher_config: str = "",
        student_classes: Optional[Sequence[str]] = None,
        teacher_classes: Optional[Sequence[str]] = None,
    ):
        super().__init__()
        if teacher.num_classes != student.num_classes:
            raise ValueError(f"teacher has {teacher.num_classes} classes, student {student.num_classes}: they must predict the same classes")
        if student_classes is not None and teacher_classes is not None and list(student_classes) != list(teacher_classes):
            raise ValueError(f"teacher classes {list(teacher_classes)} differ from student classes {list(student_classes)}")
        if (logit_loss is None) != (distill_queries is None):
            raise ValueError("logit_loss and distill_queries go together: set both or neither")
        if logit_loss is not None and logit_loss.weight_mode in ("gt_conf", "gt_quality") and not distill_queries.uses_labels:
            raise ValueError(f"weight_mode={logit_loss.weight_mode!r} needs target-aware queries; {type(distill_queries).__name__} points have no class")
        if getattr(distill_queries, "content", None) == "label_encoder":
            for who, m in (("student", student), ("teacher", teacher)):
                if getattr(m, "label_enc", None) is None:
                    raise ValueError(f"distill_queries.content='label_encoder' needs a label_enc (DINO, or DAB-DETR with dn_number > 0); the {who} is a {type(m).__name__}")
        if (memory_loss is not None or feature_loss is not None) and student.num_levels != teacher.num_levels:
            raise ValueError(f"memory/feature KD needs the same levels: student has {student.num_levels}, teacher {teacher.num_levels}")
        self.student = student
        self.memory_loss, self.logit_loss, self.feature_loss = memory_loss, logit_loss, feature_loss
        self.distill_queries = distill_queries
        Ds, Dt = student.embed_dim, teacher.embed_dim
        # Map the student's tokens to the teacher's width; trained with the student, dropped at export.
        self.memory_adapter = nn.Linear(Ds, Dt) if memory_loss is not None and Ds != Dt else None
        self.feature_adapter = nn.Linear(Ds, Dt) if feature_loss is not None and Ds != Dt else None
        self.student_classes = list(student_classes) if student_classes is not None else None
        self.teacher_weights, self.teacher_config = teacher_weights, teacher_config

        load_teacher_weights(teacher, teacher_weights, teacher_config, self.student_classes)
        teacher.requires_grad_(False)
        teacher.eval()
        object.__setattr__(self, "teacher", teacher)  # not a submodule: see the module docstring
        self.teacher_fingerprint = state_fingerprint(teacher)
        self.teacher.to(self.student.device)

        # Set by DistillationHook each step.
        self.kd_scale = 1.0
        self.compute_teacher_losses = False
        # Read by DistillationHook after each step.
        self.teacher_losses: Optional[Dict[str, Tensor]] = None
        self.kd_stats: Dict[str, Tensor] = {}

    # ----------------------------------------------------------- the teacher
    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    @property
    def device(self) -> torch.device:
        return self.student.device

    def check_teacher(self, optimizer=None) -> None:
        """Raise unless the teacher is loaded and frozen: in eval mode, no parameter requiring a
        gradient, none in ``optimizer``, and bit-identical to the checkpoint it was loaded from."""
        problems = []
        if self.teacher.training:
            problems.append("it is in train mode")
        trainable = [n for n, p in self.teacher.named_parameters() if p.requires_grad]
        if trainable:
            problems.append(f"{len(trainable)} parameters require grad:" + _list(trainable, 5))
        if optimizer is not None:
            in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
            shared = [n for n, p in self.teacher.named_parameters() if id(p) in in_opt]
            if shared:
                problems.append(f"{len(shared)} of its parameters are in the optimizer:" + _list(shared, 5))
        if state_fingerprint(self.teacher) != self.teacher_fingerprint:
            problems.append(f"its weights differ from the checkpoint it was loaded from ({self.teacher_weights})")
        if problems:
            raise RuntimeError("the teacher is not frozen: " + "; ".join(problems))

    def extra_repr(self) -> str:
        return f"teacher={type(self.teacher).__name__} (frozen, not a submodule) from {self.teacher_weights}"

    # ---------------------------------------------------------------- export
    def export_student(self, path: str) -> None:
        """Save the student alone (no teacher, no adapters) as a detectron2 checkpoint
        ``{"model": state_dict}`` that the plain student config loads with
        ``train.init_checkpoint``. Written to a temporary file and renamed."""
        state = {"model": {k: v.detach().cpu() for k, v in self.student.state_dict().items()}}
        if self.student_classes is not None:
            state["thing_classes"] = self.student_classes
        from ..engine.checkpoint import atomic_open

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_open(path, "wb") as f:
            torch.save(state, f)

    # --------------------------------------------------------------- forward
    def forward(self, batched_inputs: List[Dict]):
        """Training: the loss dict (student detection + KD terms). Inference: the student's."""
        if not self.training:
            return self.student(batched_inputs)
        s, t = self.student, self.teacher
        images = s.preprocess_image(batched_inputs)
        targets = s.prepare_targets(batched_inputs)
        enc_s = s.encode(images)
        groups, extras = s.build_query_groups(enc_s, targets)

        with torch.no_grad():
            enc_t = t.encode(t.preprocess_image(batched_inputs))
            points = self.distill_queries.points(targets, t, enc_t) if self.distill_queries is not None else None
            t_points = point_query_groups(t, points) if points is not None else []
            own, own_extras = t.build_query_groups(enc_t, targets) if self.compute_teacher_losses else ([], {})
            t_outs = t.decode(enc_t, own + t_points) if own or t_points else []
            if own:
                self.teacher_losses = t.losses(t_outs[: len(own)], own_extras, targets)
            t_outs = t_outs[len(own):]

        s_points = point_query_groups(s, points) if points is not None else []
        outs = s.decode(enc_s, groups + s_points)
        losses = s.losses(outs[: len(groups)], extras, targets)
        kd = self.kd_losses(enc_s, enc_t, targets, points, outs[len(groups):], t_outs, outs[0])
        losses.update({k: v * self.kd_scale for k, v in kd.items()})
        return losses

    def kd_losses(self, enc_s, enc_t, targets, points, s_outs, t_outs, main_out) -> Dict[str, Tensor]:
        """The KD terms, unscaled by the warm-up. Same keys on every batch (DDP needs the same
        graph on every rank): without objects, TCLD is a zero that still touches the student."""
        losses = {}
        boxes = [tg["boxes"] for tg in targets]
        for key, loss, adapter, get in (
            ("loss_lcmd", self.memory_loss, self.memory_adapter, lambda e: e.memory),
            ("loss_feature_kd", self.feature_loss, self.feature_adapter, lambda e: flatten_levels(e.features)),
        ):
            if loss is None:
                continue
            if not torch.equal(enc_s.spatial_shapes, enc_t.spatial_shapes):
                raise ValueError(
                    f"{key}: student levels {enc_s.spatial_shapes.tolist()} and teacher levels "
                    f"{enc_t.spatial_shapes.tolist()} differ; memory and feature KD need the same strides and padding"
                )
            tokens = get(enc_s)
            losses[key] = loss(get(enc_t), adapter(tokens) if adapter is not None else tokens,
                               boxes, enc_s.spatial_shapes, enc_s.valid_ratios)
        if self.logit_loss is not None:
            prefix = f"loss_{self.distill_queries.name}_"
            # Every rank joins the all-reduce, with or without points.
            n = mean_count_over_ranks(points.num_valid if points is not None else 0, self.device)
            if points is None:
                zero = main_out.logits[-1].sum() * 0.0
                losses.update({prefix + k: zero for k in LogitDistillLoss.TERMS})
                self.kd_stats = {"num_queries": torch.tensor(0.0)}
            else:
                terms, stats = self.logit_loss(s_outs, t_outs, points, n)
                losses.update({prefix + k: v for k, v in terms.items()})
                self.kd_stats = {"num_queries": torch.tensor(float(points.num_valid)), **stats}
        return losses

