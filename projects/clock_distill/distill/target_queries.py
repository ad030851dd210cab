"""Distillation queries: boxes that both the teacher and the student decode, one to one.

Two sources of boxes, one code path:

- :class:`TargetQueries` (TCLD): one query per ground-truth object, built from its class and box
  ("target-aware" queries). Not learned, detached from the graph.
- :class:`KDDETRQueries` (the KD-DETR baseline): the teacher's own initial query boxes plus K
  random boxes, with no class.

Each source gives a :class:`DistillPoints` (boxes, labels, valid) once per batch; every model
then turns the same points into its own :class:`~clock_distill.modeling.detr.QueryGroup`\\ s
with :func:`point_query_groups`, the box entering through the family's own query path
(``model.queries_at``): DAB-DETR and DINO take it as the anchor box, two-stage Deformable DETR
through its proposal-to-query path, plain Deformable DETR with a sine positional query.

Shapes: B images, P points per image (padded to the batch maximum), D the model's width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..modeling.detr import QueryGroup
from ..modeling.layers import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh

__all__ = ["DistillPoints", "TargetQueries", "KDDETRQueries", "class_code", "point_query_groups"]

# Where a padded slot sits (as DINO pads its denoising groups); padded slots carry no loss.
_PAD_BOX = 0.5


@dataclass
class DistillPoints:
    """Boxes that teacher and student both decode.

    boxes: (B, P, 4) cxcywh in [0, 1] of the unpadded image.
    labels: (B, P) int64 class of each point, -1 where unknown (KD-DETR) or padding.
    valid: (B, P) bool, False on padding.
    num_copies: each model decodes this many identical, mutually isolated copies.
    attention: "group" (the points of one image and copy see each other, as a denoising group)
        or "self" (each point sees only itself).
    content: "class_code", "label_encoder" or "zero" (see :func:`point_query_groups`).
    """

    boxes: Tensor
    labels: Tensor
    valid: Tensor
    num_copies: int = 1
    attention: str = "group"
    content: str = "class_code"

    @property
    def num_points(self) -> int:
        return self.boxes.shape[1]

    @property
    def num_valid(self) -> int:
        """Valid points in the batch times copies: the loss normalizer of this rank."""
        return int(self.valid.sum()) * self.num_copies


def class_code(num_classes: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    """A fixed, non-learnable code per class: (num_classes, dim) rows of N(0, 1) entries from a
    generator seeded with 0, so every model of a width gets the same codes on every run and
    device (drawn on CPU, then moved). Unit-variance entries match the scale of the learned
    content queries (``nn.Embedding`` init) that decoders see in training."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(num_classes, dim, generator=g).to(device=device, dtype=dtype)


def _padded(per_image: Sequence[Tensor], fill: float) -> Tensor:
    """Stack (n_i, ...) tensors into (B, max n_i, ...) with ``fill`` after each."""
    n = max((t.shape[0] for t in per_image), default=0)
    shape = (len(per_image), n) + tuple(per_image[0].shape[1:])
    out = per_image[0].new_full(shape, fill)
    for b, t in enumerate(per_image):
        out[b, : t.shape[0]] = t
    return out


class TargetQueries:
    """TCLD's target-aware queries: one per GT object, ``num_copies`` isolated copies.

    Args:
        num_copies: zero-noise copies of the GT set (the first author's early distiller used 3).
            Copies are decoded in separate groups; with dropout 0 their outputs are identical,
            so more copies only cost time unless the decoder has dropout.
        content: the content query: "class_code" (a fixed code per class, :func:`class_code`),
            "label_encoder" (the model's own denoising label embedding ``label_enc``, detached:
            DINO's zero-noise denoising positives) or "zero".
        attention: "group" (the GT queries of an image see each other, as in a denoising group;
            padded slots of images with fewer objects are visible too, as in DINO) or "self".
    """

    name = "tcld"
    uses_labels = True

    def __init__(self, num_copies: int = 1, content: str = "class_code", attention: str = "group"):
        if num_copies < 1:
            raise ValueError(f"num_copies must be >= 1, got {num_copies}")
        _check_choice("content", content, ("class_code", "label_encoder", "zero"))
        _check_choice("attention", attention, ("group", "self"))
        self.num_copies, self.content, self.attention = num_copies, content, attention

    def points(self, targets: List[Dict[str, Tensor]], teacher=None, teacher_enc=None) -> Optional[DistillPoints]:
        """Points from the targets (labels (n_i,), boxes (n_i, 4)); None when no image has an object."""
        if sum(int(t["labels"].shape[0]) for t in targets) == 0:
            return None
        boxes = _padded([t["boxes"].detach() for t in targets], _PAD_BOX)
        labels = _padded([t["labels"] for t in targets], -1)
        return DistillPoints(boxes, labels, labels >= 0, self.num_copies, self.attention, self.content)


class KDDETRQueries:
    """KD-DETR's distillation points (Wang et al., CVPR 2024): the teacher's own initial query
    boxes (its learned anchors, or its top-k encoder proposals for two-stage and DINO), plus
    ``num_random`` random boxes, the same for teacher and student. They carry no class, so the
    content is zero; the weight of each point must come from the teacher alone (``max_conf``).

    Random boxes: centre uniform in [0, 1], width and height uniform in [0.05, 0.5] (the range
    of object sizes on KITTI-like images), clipped to the image.
    Teacher references that are 2-d points (plain Deformable DETR) get width and height
    sigmoid(-2) = 0.12, the size its box head starts from.

    Args:
        num_random: K random boxes per image.
        teacher_queries: also use the teacher's own initial query boxes.
        attention: as for :class:`TargetQueries`.
    """

    name = "kd_detr"
    uses_labels = False

    def __init__(self, num_random: int = 300, teacher_queries: bool = True, attention: str = "group"):
        _check_choice("attention", attention, ("group", "self"))
        if num_random < 0 or (num_random == 0 and not teacher_queries):
            raise ValueError("KDDETRQueries needs num_random > 0 or teacher_queries=True")
        self.num_random, self.teacher_queries, self.attention = num_random, teacher_queries, attention

    def points(self, targets, teacher=None, teacher_enc=None) -> DistillPoints:
        B = len(targets)
        device = teacher_enc.memory.device
        parts = []
        if self.teacher_queries:
            groups, _ = teacher.build_query_groups(teacher_enc, None)
            ref = groups[0].reference.detach()
            if ref.shape[-1] == 2:
                ref = torch.cat([ref, torch.full_like(ref, torch.sigmoid(torch.tensor(-2.0)).item())], -1)
            parts.append(ref.expand(B, -1, -1))
        if self.num_random:
            c = torch.rand(B, self.num_random, 2, device=device)
            wh = torch.rand(B, self.num_random, 2, device=device) * 0.45 + 0.05
            parts.append(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(torch.cat([c, wh], -1)).clamp(0.0, 1.0)))
        boxes = torch.cat(parts, 1).to(teacher_enc.memory.dtype)
        labels = torch.full(boxes.shape[:2], -1, dtype=torch.long, device=device)
        return DistillPoints(boxes, labels, torch.ones_like(labels, dtype=torch.bool), 1, self.attention, "zero")


def point_query_groups(model, points: DistillPoints) -> List[QueryGroup]:
    """The model's ``num_copies`` query groups for the points, fed through ``model.queries_at``.

    Content per point, detached (the queries are never learned): "class_code" the fixed code of
    its class (zero on padding and unknown class), "label_encoder" ``model.label_enc`` of its
    class (DINO), "zero" nothing. Returns ``points.num_copies`` groups of (B, P) queries.
    """
    B, P = points.labels.shape
    D = model.embed_dim
    dtype = points.boxes.dtype
    known = (points.labels >= 0)[..., None].to(dtype)
    idx = points.labels.clamp(min=0)
    if points.content == "class_code":
        content = class_code(model.num_classes, D, points.boxes.device, dtype)[idx] * known
    elif points.content == "label_encoder":
        if getattr(model, "label_enc", None) is None:
            raise ValueError(f"content='label_encoder' needs a model with a label_enc (DINO, or DAB-DETR with dn_number > 0); {type(model).__name__} has none")
        content = model.label_enc(idx).detach() * known
    else:
        content = points.boxes.new_zeros(B, P, D)
    mask = None
    if points.attention == "self":
        mask = ~torch.eye(P, dtype=torch.bool, device=points.boxes.device)
    groups = []
    for _ in range(points.num_copies):
        g = model.queries_at(points.boxes, content, name="distill")
        g.self_attn_mask = mask
        groups.append(g)
    return groups


def _check_choice(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{key}={value!r}: expected one of {list(choices)}")
