"""Box conversions and overlap measures used by matching, losses and distillation.

Conventions:
- ``cxcywh``: (center x, center y, width, height), usually normalized to [0, 1]
  by the image size.
- ``xyxy``: (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1.

Every function works on any device and dtype and keeps the autograd graph.
"""

from typing import Tuple

import torch
from torch import Tensor

__all__ = [
    "box_cxcywh_to_xyxy",
    "box_xyxy_to_cxcywh",
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "elementwise_box_iou",
    "elementwise_generalized_box_iou",
    "inverse_sigmoid",
]


def _check_last_dim_4(name: str, boxes: Tensor) -> None:
    if boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have a last dimension of 4, got shape {tuple(boxes.shape)}")


def _check_well_formed(name: str, boxes: Tensor) -> None:
    # Degenerate boxes make the enclosing-box area zero or negative, so GIoU
    # would silently become NaN or meaningless; fail loudly instead.
    if boxes.numel() and not bool((boxes[..., 2:] >= boxes[..., :2]).all()):
        bad = ~(boxes[..., 2:] >= boxes[..., :2]).all(-1)
        first = boxes[bad][0].tolist()
        raise ValueError(
            f"{name} has {int(bad.sum())} degenerate box(es) with x2 < x1 or y2 < y1 "
            f"(or NaN); the first is {first}. Boxes must be xyxy with x2 >= x1, y2 >= y1."
        )


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) cxcywh -> (..., 4) xyxy."""
    _check_last_dim_4("boxes", boxes)
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (..., 4) cxcywh."""
    _check_last_dim_4("boxes", boxes)
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (...,) area (negative for inverted boxes; not clamped)."""
    _check_last_dim_4("boxes", boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tuple[Tensor, Tensor]:
    """Pairwise IoU.

    Args:
        boxes1: (N, 4) xyxy.
        boxes2: (M, 4) xyxy.

    Returns:
        iou: (N, M).
        union: (N, M) union areas (needed by :func:`generalized_box_iou`).
        Two zero-area boxes give 0/0 = NaN, as in the DETR reference.
    """
    _check_last_dim_4("boxes1", boxes1)
    _check_last_dim_4("boxes2", boxes2)
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return inter / union, union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalized IoU (Rezatofighi et al. 2019), in [-1, 1].

    Args:
        boxes1: (N, 4) xyxy, x2 >= x1 and y2 >= y1.
        boxes2: (M, 4) xyxy, same rule.

    Returns:
        (N, M) GIoU.

    Raises:
        ValueError: if a box is degenerate (x2 < x1 or y2 < y1, or NaN).
    """
    _check_last_dim_4("boxes1", boxes1)
    _check_last_dim_4("boxes2", boxes2)
    _check_well_formed("boxes1", boxes1)
    _check_well_formed("boxes2", boxes2)
    iou, union = box_iou(boxes1, boxes2)
    lt = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def elementwise_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tuple[Tensor, Tensor]:
    """IoU of corresponding pairs.

    Args:
        boxes1: (N, 4) xyxy.
        boxes2: (N, 4) xyxy.

    Returns:
        iou: (N,).
        union: (N,).
    """
    _check_last_dim_4("boxes1", boxes1)
    _check_last_dim_4("boxes2", boxes2)
    if boxes1.shape != boxes2.shape:
        raise ValueError(
            f"elementwise IoU needs boxes of equal shape, got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}"
        )
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.max(boxes1[..., :2], boxes2[..., :2])
    rb = torch.min(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - inter
    return inter / union, union


def elementwise_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """GIoU of corresponding pairs; equals the diagonal of :func:`generalized_box_iou`
    without building the (N, N) matrix.

    Args:
        boxes1: (N, 4) xyxy, x2 >= x1 and y2 >= y1.
        boxes2: (N, 4) xyxy, same rule.

    Returns:
        (N,) GIoU.

    Raises:
        ValueError: on degenerate boxes or unequal shapes.
    """
    _check_well_formed("boxes1", boxes1)
    _check_well_formed("boxes2", boxes2)
    iou, union = elementwise_box_iou(boxes1, boxes2)
    lt = torch.min(boxes1[..., :2], boxes2[..., :2])
    rb = torch.max(boxes1[..., 2:], boxes2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Logit of ``x`` (any shape), with ``x`` clamped to [0, 1] and both ``x``
    and ``1 - x`` clamped to at least ``eps`` so that 0 and 1 stay finite."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))
