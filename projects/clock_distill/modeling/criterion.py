"""DETR set criterion: Hungarian matching, then a sigmoid focal class loss and
L1 + GIoU box losses on the matched pairs, for the last decoder layer, every
earlier layer (``aux_outputs``) and the two-stage encoder proposals
(``enc_outputs``).

The per-term methods take precomputed matching indices, so terms without
matching (denoising groups, distillation queries with known targets) reuse
them through :meth:`SetCriterion.compute_losses`.
"""

from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers.box_ops import box_cxcywh_to_xyxy, elementwise_generalized_box_iou

__all__ = ["sigmoid_focal_loss", "SetCriterion", "get_world_size", "mean_count_over_ranks"]

Indices = Sequence[Tuple[Tensor, Tensor]]


def get_world_size() -> int:
    """Number of DDP processes (1 when torch.distributed is not initialized)."""
    try:
        from detectron2.utils import comm
    except ImportError:
        # Without detectron2 the same answer comes from torch.distributed itself.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size()
        return 1
    return comm.get_world_size()


def sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, num_boxes: float, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Sigmoid focal loss (Lin et al. 2017) with the normalization of Deformable DETR.

    Args:
        inputs: (B, Q, C) logits.
        targets: (B, Q, C) targets in [0, 1] (one-hot for detection).
        num_boxes: normalizer (number of target boxes, at least 1).
        alpha: weight of positives (1 - alpha for negatives); < 0 disables it.
        gamma: focusing exponent.

    Returns:
        Scalar ``loss.mean(1).sum() / num_boxes``: the mean over queries and the
        sum over batch and classes. Multiplying by Q, as the criterion does,
        gives the plain sum divided by num_boxes.
    """
    if inputs.dim() != 3 or inputs.shape != targets.shape:
        raise ValueError(
            f"inputs and targets must both be (B, Q, C), got {tuple(inputs.shape)} and {tuple(targets.shape)}"
        )
    prob = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_boxes


def mean_count_over_ranks(num: float, device: torch.device) -> float:
    """A per-rank count (of target boxes, of distillation queries) averaged over DDP ranks and
    clamped to >= 1: the loss normalizer. ``device`` is where the all-reduce runs (the model's
    device, as NCCL needs)."""
    world = get_world_size()
    if world > 1:
        total = torch.tensor([num], dtype=torch.float32, device=device)
        torch.distributed.all_reduce(total)
        num = total.item()
    return max(num / world, 1.0)


class SetCriterion(nn.Module):
    """Loss of a DETR with sigmoid classification and no background class.

    Loss terms (names in ``losses``) and the loss keys they produce:
      - ``"class"``: ``loss_class``, sigmoid focal loss against one-hot labels;
        unmatched queries have an all-zero target.
      - ``"boxes"``: ``loss_bbox`` (L1 on cxcywh) and ``loss_giou`` (1 - GIoU),
        on matched pairs.
    Every term is divided by ``num_boxes``, the number of target boxes in the
    batch averaged over DDP ranks and clamped to at least 1, and multiplied by
    its weight ``weight_dict[key]``. Earlier decoder layers get the suffix
    ``_{i}`` (i = 0 for the first), the encoder proposals the suffix ``_enc``;
    they use the same weights as the final layer.

    Encoder proposals (``enc_outputs``): with ``enc_binary_labels=True`` (default,
    as the Deformable DETR reference does for two-stage), matching and losses
    use a copy of the targets whose labels are all 0, so the proposals learn
    class-agnostic objectness in logit channel 0 while the other channels only
    see negatives. DINO instead trains its encoder proposals with the real
    labels: set ``enc_binary_labels=False``.

    Args:
        num_classes: C, the width of the decoder logits.
        matcher: a :class:`~clock_distill.modeling.matcher.HungarianMatcher`
            (or any callable with its signature).
        weight_dict: weights with keys "loss_class", "loss_bbox", "loss_giou"
            (those needed by ``losses``); other keys are ignored here.
        losses: loss terms to compute, from ("class", "boxes").
        focal_alpha, focal_gamma: focal loss parameters.
        enc_binary_labels: see above.
    """

    _LOSS_KEYS = {"class": ("loss_class",), "boxes": ("loss_bbox", "loss_giou")}

    def __init__(
        self,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: Mapping[str, float],
        losses: Iterable[str] = ("class", "boxes"),
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        enc_binary_labels: bool = True,
    ):
        super().__init__()
        losses = tuple(losses)
        unknown = [name for name in losses if name not in self._LOSS_KEYS]
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown}; available: {sorted(self._LOSS_KEYS)}")
        missing = [k for name in losses for k in self._LOSS_KEYS[name] if k not in weight_dict]
        if missing:
            raise ValueError(f"weight_dict {dict(weight_dict)} lacks the weight(s) {missing} needed by losses {losses}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.losses = losses
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.enc_binary_labels = enc_binary_labels

    @property
    def loss_keys(self) -> Tuple[str, ...]:
        """The unsuffixed keys that ``compute_losses`` produces, e.g. ("loss_class", "loss_bbox", "loss_giou")."""
        return tuple(k for name in self.losses for k in self._LOSS_KEYS[name])

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def get_num_boxes(targets: Sequence[Dict[str, Tensor]], device: torch.device) -> float:
        """Number of target boxes in the batch, averaged over DDP ranks and
        clamped to >= 1 (the loss normalizer). ``device`` is where the
        all-reduce runs (the model's device, as NCCL needs)."""
        return mean_count_over_ranks(float(sum(int(t["labels"].shape[0]) for t in targets)), device)

    @staticmethod
    def _src_permutation_idx(indices: Indices, device: torch.device) -> Tuple[Tensor, Tensor]:
        """(batch index, query index), each (sum_i n_i,), for advanced indexing."""
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)]).to(device)
        src_idx = torch.cat([src for src, _ in indices]).to(device)
        return batch_idx, src_idx

    @staticmethod
    def _check_indices(outputs: Mapping[str, Tensor], targets: Sequence[Dict[str, Tensor]], indices: Indices) -> None:
        batch = next(iter(outputs.values())).shape[0]
        if len(targets) != batch or len(indices) != batch:
            raise ValueError(
                f"batch of {batch} predictions, but {len(targets)} target dicts and {len(indices)} index pairs"
            )

    # ------------------------------------------------------------- loss terms
    def loss_labels(
        self, outputs: Mapping[str, Tensor], targets: Sequence[Dict[str, Tensor]], indices: Indices, num_boxes: float
    ) -> Dict[str, Tensor]:
        """Unweighted ``loss_class``.

        Args:
            outputs: "pred_logits" (B, Q, C).
            targets: B dicts with "labels" (n_i,) int64 in [0, C).
            indices: B pairs (pred_idx, tgt_idx) of equal length (any device).
            num_boxes: normalizer.

        Returns:
            {"loss_class": scalar}, the focal loss summed over queries and
            classes, divided by num_boxes.
        """
        self._check_indices(outputs, targets, indices)
        logits = outputs["pred_logits"]
        B, Q, C = logits.shape
        idx = self._src_permutation_idx(indices, logits.device)
        matched_labels = torch.cat(
            [t["labels"][tgt.to(t["labels"].device)].to(logits.device) for t, (_, tgt) in zip(targets, indices)]
        )
        # Class C is a scratch "no object" column, dropped after the scatter.
        target_classes = torch.full((B, Q), C, dtype=torch.int64, device=logits.device)
        target_classes[idx] = matched_labels
        onehot = torch.zeros((B, Q, C + 1), dtype=logits.dtype, device=logits.device)
        onehot.scatter_(2, target_classes.unsqueeze(-1), 1)
        onehot = onehot[..., :C]
        loss = sigmoid_focal_loss(logits, onehot, num_boxes, alpha=self.focal_alpha, gamma=self.focal_gamma) * Q
        return {"loss_class": loss}

    def loss_boxes(
        self, outputs: Mapping[str, Tensor], targets: Sequence[Dict[str, Tensor]], indices: Indices, num_boxes: float
    ) -> Dict[str, Tensor]:
        """Unweighted ``loss_bbox`` and ``loss_giou`` of the matched pairs.

        Args:
            outputs: "pred_boxes" (B, Q, 4) cxcywh normalized.
            targets: B dicts with "boxes" (n_i, 4) cxcywh normalized.
            indices: B pairs (pred_idx, tgt_idx).
            num_boxes: normalizer.

        Returns:
            {"loss_bbox": sum of |pred - target| over the 4 coordinates and all
            pairs / num_boxes, "loss_giou": sum of (1 - GIoU) / num_boxes}.
        """
        self._check_indices(outputs, targets, indices)
        pred_boxes = outputs["pred_boxes"]
        idx = self._src_permutation_idx(indices, pred_boxes.device)
        src = pred_boxes[idx]  # (K, 4)
        tgt = torch.cat(
            [t["boxes"][j.to(t["boxes"].device)].to(pred_boxes) for t, (_, j) in zip(targets, indices)], dim=0
        )
        loss_bbox = F.l1_loss(src, tgt, reduction="none").sum() / num_boxes
        giou = elementwise_generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))
        loss_giou = (1 - giou).sum() / num_boxes
        return {"loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def compute_losses(
        self,
        outputs: Mapping[str, Tensor],
        targets: Sequence[Dict[str, Tensor]],
        indices: Indices,
        num_boxes: float,
        suffix: str = "",
    ) -> Dict[str, Tensor]:
        """All terms in ``self.losses`` for given matching ``indices``, weighted
        by ``weight_dict`` and with ``suffix`` appended to each key (e.g. "_dn")."""
        terms = {"class": self.loss_labels, "boxes": self.loss_boxes}
        out = {}
        for name in self.losses:
            for key, value in terms[name](outputs, targets, indices, num_boxes).items():
                out[key + suffix] = value * self.weight_dict[key]
        return out

    def _match(
        self, outputs: Mapping[str, Tensor], targets: Sequence[Dict[str, Tensor]]
    ) -> List[Tuple[Tensor, Tensor]]:
        return self.matcher(outputs["pred_logits"], outputs["pred_boxes"], targets)

    # ------------------------------------------------------------------ forward
    def forward(self, outputs: Mapping, targets: Sequence[Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """
        Args:
            outputs: "pred_logits" (B, Q, C) and "pred_boxes" (B, Q, 4) cxcywh
                normalized of the last decoder layer; optional "aux_outputs", a
                list of dicts with the same two keys for the earlier layers (in
                order), and optional "enc_outputs", a dict with the same two keys
                for the two-stage encoder proposals (its C may differ when
                ``enc_binary_labels``).
            targets: B dicts with "labels" (n_i,) int64 and "boxes" (n_i, 4)
                cxcywh normalized; n_i may be 0.

        Returns:
            Flat dict of weighted scalar losses: loss_class, loss_bbox,
            loss_giou, the same with suffixes _0 .. _{len(aux)-1} and _enc.
        """
        for key in ("pred_logits", "pred_boxes"):
            if key not in outputs:
                raise KeyError(f"outputs lacks {key!r}; it has {sorted(outputs)}")
        if outputs["pred_logits"].shape[-1] != self.num_classes:
            raise ValueError(
                f"pred_logits has {outputs['pred_logits'].shape[-1]} classes, criterion num_classes={self.num_classes}"
            )
        main = {"pred_logits": outputs["pred_logits"], "pred_boxes": outputs["pred_boxes"]}
        num_boxes = self.get_num_boxes(targets, main["pred_logits"].device)

        losses = self.compute_losses(main, targets, self._match(main, targets), num_boxes)
        for i, aux in enumerate(outputs.get("aux_outputs", ())):
            if aux["pred_logits"].shape[-1] != self.num_classes:
                raise ValueError(
                    f"aux_outputs[{i}] pred_logits has {aux['pred_logits'].shape[-1]} classes, "
                    f"criterion num_classes={self.num_classes}"
                )
            losses.update(self.compute_losses(aux, targets, self._match(aux, targets), num_boxes, suffix=f"_{i}"))
        if "enc_outputs" in outputs:
            enc = outputs["enc_outputs"]
            enc_targets = targets
            if self.enc_binary_labels:
                enc_targets = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]
            enc_indices = self._match(enc, enc_targets)
            losses.update(self.compute_losses(enc, enc_targets, enc_indices, num_boxes, suffix="_enc"))
        return losses

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, losses={self.losses}, weight_dict={self.weight_dict}, "
            f"focal_alpha={self.focal_alpha}, focal_gamma={self.focal_gamma}, "
            f"enc_binary_labels={self.enc_binary_labels}"
        )
