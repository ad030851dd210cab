"""One-to-one assignment of predictions to ground truth (DETR's Hungarian matching)."""

from typing import Dict, List, Sequence, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from .layers.box_ops import box_cxcywh_to_xyxy, generalized_box_iou

__all__ = ["HungarianMatcher"]


class HungarianMatcher(nn.Module):
    """Minimum-cost bipartite matching between the Q predictions and the n_i
    targets of each image, with the cost of Deformable DETR:

        C = cost_class * focal(p[:, label]) + cost_bbox * L1(cxcywh) - cost_giou * GIoU

    where, with p the sigmoid of the logits,
    focal = alpha * (1-p)^gamma * -log(p + 1e-8) - (1-alpha) * p^gamma * -log(1-p + 1e-8)
    (the focal loss of a positive minus that of a negative, so that only the
    change in loss from being matched counts).

    To match only part of the queries (e.g. one query group), slice the
    predictions before calling; the returned prediction indices are then
    relative to the slice.

    Args:
        cost_class, cost_bbox, cost_giou: weights of the three terms.
        focal_alpha, focal_gamma: focal loss parameters of the class cost.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher needs at least one non-zero cost weight")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    @torch.no_grad()
    def cost_matrix(self, pred_logits: Tensor, pred_boxes: Tensor, labels: Tensor, boxes: Tensor) -> Tensor:
        """Matching cost of one image.

        Args:
            pred_logits: (Q, C) logits.
            pred_boxes: (Q, 4) cxcywh normalized.
            labels: (n,) int64 class ids in [0, C).
            boxes: (n, 4) cxcywh normalized.

        Returns:
            (Q, n) cost, float32 or wider, on the predictions' device.
        """
        # Matching needs no reduced precision, and autocast may hand us halves.
        dtype = torch.promote_types(pred_logits.dtype, torch.float32)
        prob = pred_logits.to(dtype).sigmoid()
        out_boxes = pred_boxes.to(dtype)
        tgt_boxes = boxes.to(device=out_boxes.device, dtype=dtype)
        labels = labels.to(pred_logits.device)

        alpha, gamma = self.focal_alpha, self.focal_gamma
        prob_t = prob[:, labels]  # (Q, n)
        pos = alpha * (1 - prob_t) ** gamma * -(prob_t + 1e-8).log()
        neg = (1 - alpha) * prob_t**gamma * -(1 - prob_t + 1e-8).log()
        cost_class = pos - neg
        cost_bbox = torch.cdist(out_boxes, tgt_boxes, p=1)
        cost_giou = -generalized_box_iou(box_cxcywh_to_xyxy(out_boxes), box_cxcywh_to_xyxy(tgt_boxes))
        return self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou

    @torch.no_grad()
    def forward(
        self, pred_logits: Tensor, pred_boxes: Tensor, targets: Sequence[Dict[str, Tensor]]
    ) -> List[Tuple[Tensor, Tensor]]:
        """
        Args:
            pred_logits: (B, Q, C) class logits (sigmoid, no background class).
            pred_boxes: (B, Q, 4) cxcywh normalized.
            targets: B dicts with "labels" (n_i,) int64 and "boxes" (n_i, 4)
                cxcywh normalized; n_i may be 0.

        Returns:
            B pairs (pred_idx, tgt_idx), int64 on the CPU, each of length
            min(Q, n_i): prediction pred_idx[k] is matched to target tgt_idx[k].
            pred_idx is sorted ascending (scipy's order).
        """
        if pred_logits.dim() != 3 or pred_boxes.dim() != 3 or pred_boxes.shape[-1] != 4:
            raise ValueError(
                f"pred_logits must be (B, Q, C) and pred_boxes (B, Q, 4), got "
                f"{tuple(pred_logits.shape)} and {tuple(pred_boxes.shape)}"
            )
        if pred_logits.shape[:2] != pred_boxes.shape[:2]:
            raise ValueError(
                f"pred_logits {tuple(pred_logits.shape)} and pred_boxes {tuple(pred_boxes.shape)} disagree on (B, Q)"
            )
        B, Q, C = pred_logits.shape
        if len(targets) != B:
            raise ValueError(f"got {len(targets)} target dicts for a batch of {B}")
        sizes = []
        for i, t in enumerate(targets):
            n = t["labels"].shape[0]
            if t["labels"].dim() != 1 or tuple(t["boxes"].shape) != (n, 4):
                raise ValueError(
                    f"target {i}: labels must be (n,) and boxes (n, 4), got "
                    f"{tuple(t['labels'].shape)} and {tuple(t['boxes'].shape)}"
                )
            sizes.append(n)
        if sum(sizes):
            all_labels = torch.cat([t["labels"].reshape(-1).to(pred_logits.device) for t in targets])
            if bool((all_labels < 0).any()) or bool((all_labels >= C).any()):
                raise ValueError(f"target labels must lie in [0, {C}), got values {sorted(set(all_labels.tolist()))}")

        # One device->host copy for the whole batch: the per-image costs are
        # flattened and concatenated, then split again on the CPU.
        blocks = [
            self.cost_matrix(pred_logits[i], pred_boxes[i], t["labels"], t["boxes"]).flatten()
            for i, t in enumerate(targets)
        ]
        flat = torch.cat(blocks).cpu() if blocks else torch.zeros(0)
        if not bool(torch.isfinite(flat).all()):
            raise ValueError(
                "the matching cost has NaN or inf entries; check pred_boxes and target boxes "
                "(non-finite values or zero-size boxes whose GIoU is undefined)"
            )
        indices = []
        for cost, n in zip(flat.split([Q * n for n in sizes]), sizes):
            row, col = linear_sum_assignment(cost.view(Q, n).numpy())
            indices.append(
                (torch.as_tensor(row, dtype=torch.int64), torch.as_tensor(col, dtype=torch.int64))
            )
        return indices

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_bbox={self.cost_bbox}, cost_giou={self.cost_giou}, "
            f"focal_alpha={self.focal_alpha}, focal_gamma={self.focal_gamma}"
        )
