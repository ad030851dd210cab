"""TCLD's logit and box distillation on queries that teacher and student decode one to one
(target-aware queries, or KD-DETR's points: :mod:`.target_queries`).

Per student decoder layer l (paired with a teacher layer, :func:`layer_pairs`) and valid query q:

- ``cls``: T^2 * KL(teacher || student) of the class distributions at temperature T, either per
  class on Bernoulli(sigmoid(x / T)) summed over classes ("sigmoid", the DETRs' own focal
  classification) or on softmax(x / T) over classes ("softmax");
- ``bbox``: L1 between the boxes (cxcywh, summed over the 4 coordinates);
- ``giou``: 1 - GIoU(student box, teacher box);

each weighted by w_q (:func:`query_weights`) and summed over layers and queries, divided by the
number of distillation queries in the batch (averaged over DDP ranks, at least 1).
Shapes: B images, Q queries, C classes.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..modeling.detr import DecoderOutput
from ..modeling.layers import box_cxcywh_to_xyxy, elementwise_box_iou, elementwise_generalized_box_iou

__all__ = ["LogitDistillLoss", "kl_divergence", "query_weights", "layer_pairs"]

WEIGHT_MODES = ("max_conf", "gt_conf", "gt_quality", "none")


def kl_divergence(teacher_logits: Tensor, student_logits: Tensor, temperature: float = 1.0, kind: str = "sigmoid") -> Tensor:
    """T^2 * KL(teacher || student) per query: (..., C) logits -> (...).

    "sigmoid": sum over classes of KL between Bernoulli(sigmoid(t/T)) and Bernoulli(sigmoid(s/T)),
    computed with log-sigmoids (stable for large logits); "softmax": KL between softmax(t/T)
    and softmax(s/T) over the classes. Exactly 0 when the logits are equal.
    """
    t, s = teacher_logits / temperature, student_logits / temperature
    if kind == "sigmoid":
        p = t.sigmoid()
        kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
        return kl.sum(-1) * temperature**2
    if kind == "softmax":
        log_pt, log_ps = t.log_softmax(-1), s.log_softmax(-1)
        return (log_pt.exp() * (log_pt - log_ps)).sum(-1) * temperature**2
    raise ValueError(f"kl={kind!r}: expected 'sigmoid' or 'softmax'")


def query_weights(
    mode: str, teacher_logits: Tensor, teacher_boxes: Tensor, labels: Optional[Tensor] = None, gt_boxes: Optional[Tensor] = None
) -> Tensor:
    """w_q (B, Q) from the teacher's logits (B, Q, C) and boxes (B, Q, 4), at temperature 1.

    - "max_conf": max over classes of sigmoid(t) (KD-DETR's): how sure the teacher is of anything;
    - "gt_conf": sigmoid(t) of the query's true class ``labels`` (B, Q): the query knows its
      target, so a teacher that calls a car a pedestrian is not believed;
    - "gt_quality": gt_conf * IoU(teacher box, ``gt_boxes`` (B, Q, 4)): also not believed where
      its box is off;
    - "none": 1.
    Entries with label -1 (padding, unknown class) get the gt modes' weight 0: the gt modes
    need points with classes (target-aware queries, not KD-DETR's).
    """
    prob = teacher_logits.detach().sigmoid()
    if mode == "max_conf":
        return prob.max(-1).values
    if mode == "none":
        return torch.ones_like(prob[..., 0])
    if mode not in WEIGHT_MODES:
        raise ValueError(f"weight={mode!r}: expected one of {list(WEIGHT_MODES)}")
    if labels is None or (mode == "gt_quality" and gt_boxes is None):
        raise ValueError(f"weight={mode!r} needs the queries' true classes (and boxes for gt_quality)")
    known = labels >= 0
    w = prob.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * known
    if mode == "gt_quality":
        iou, _ = elementwise_box_iou(box_cxcywh_to_xyxy(teacher_boxes.detach()), box_cxcywh_to_xyxy(gt_boxes))
        w = w * iou
    return w


def layer_pairs(num_student: int, num_teacher: int, which: str = "all") -> List[Tuple[int, int]]:
    """(student layer, teacher layer) pairs: student layer i learns from teacher layer
    round((i + 1) * L_t / L_s) - 1, so the last layers pair and a shallower student's layers
    spread evenly over the teacher's. ``which="last"`` keeps only the last pair."""
    pairs = [(i, max(0, round((i + 1) * num_teacher / num_student) - 1)) for i in range(num_student)]
    return pairs[-1:] if which == "last" else pairs


class LogitDistillLoss(nn.Module):
    """TCLD (and KD-DETR's loss, on other points): weighted class KL, box L1 and GIoU between
    student and teacher outputs on the same queries.

    Args:
        weight: lambda of the whole term in the total loss.
        weight_mode: w_q, see :func:`query_weights` ("max_conf", "gt_conf", "gt_quality", "none").
        kl: "sigmoid" or "softmax".
        temperature: T.
        layers: "all" decoder layers (paired by :func:`layer_pairs`) or the "last".
        loss_weights: per-term weights {"cls", "bbox", "giou"} (DETR's 1, 5, 2 by default).
    """

    TERMS = ("cls", "bbox", "giou")

    def __init__(
        self,
        weight: float = 1.0,
        weight_mode: str = "max_conf",
        kl: str = "sigmoid",
        temperature: float = 1.0,
        layers: str = "all",
        loss_weights: Optional[Dict[str, float]] = None,
    ):
        super().__init__()
        if weight_mode not in WEIGHT_MODES:
            raise ValueError(f"weight_mode={weight_mode!r}: expected one of {list(WEIGHT_MODES)}")
        if kl not in ("sigmoid", "softmax"):
            raise ValueError(f"kl={kl!r}: expected 'sigmoid' or 'softmax'")
        if layers not in ("all", "last"):
            raise ValueError(f"layers={layers!r}: expected 'all' or 'last'")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.weight, self.weight_mode, self.kl, self.temperature, self.layers = weight, weight_mode, kl, temperature, layers
        self.loss_weights = {"cls": 1.0, "bbox": 5.0, "giou": 2.0, **(loss_weights or {})}
        unknown = set(self.loss_weights) - set(self.TERMS)
        if unknown:
            raise ValueError(f"loss_weights has unknown terms {sorted(unknown)}; expected {list(self.TERMS)}")

    def forward(
        self,
        student: Sequence[DecoderOutput],
        teacher: Sequence[DecoderOutput],
        points,
        normalizer: float,
    ) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
        """
        Args:
            student, teacher: one DecoderOutput per copy of the points, each layer (B, P, ·).
            points: the DistillPoints (labels (B, P), boxes (B, P, 4), valid (B, P)).
            normalizer: the number of distillation queries (global mean over ranks, >= 1).
        Returns:
            ({"cls", "bbox", "giou"}: weighted scalars, lambda and the term weights applied),
            and statistics for logging: the mean w_q over valid queries of the last layer pair.
        """
        if len(student) != len(teacher):
            raise ValueError(f"{len(student)} student copies but {len(teacher)} teacher copies")
        valid = points.valid.to(student[0].logits[-1].dtype)
        sums = {k: student[0].logits[-1].sum() * 0.0 for k in self.TERMS}
        for s_out, t_out in zip(student, teacher):
            for ls, lt in layer_pairs(s_out.num_layers, t_out.num_layers, self.layers):
                s_logits, s_boxes = s_out.logits[ls], s_out.boxes[ls]
                t_logits, t_boxes = t_out.logits[lt].detach(), t_out.boxes[lt].detach()
                w = query_weights(self.weight_mode, t_logits, t_boxes, points.labels, points.boxes) * valid
                sums["cls"] = sums["cls"] + (w * kl_divergence(t_logits, s_logits, self.temperature, self.kl)).sum()
                sums["bbox"] = sums["bbox"] + (w * (s_boxes - t_boxes).abs().sum(-1)).sum()
                giou = elementwise_generalized_box_iou(box_cxcywh_to_xyxy(s_boxes), box_cxcywh_to_xyxy(t_boxes))
                sums["giou"] = sums["giou"] + (w * (1 - giou)).sum()
            w_mean = (w.sum() / valid.sum().clamp(min=1)).detach()
        scale = self.weight / normalizer
        return {k: v * (scale * self.loss_weights[k]) for k, v in sums.items()}, {"weight_mean": w_mean}
