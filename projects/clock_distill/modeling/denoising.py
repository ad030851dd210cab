"""Contrastive denoising (CDN) queries of DINO (Zhang et al., "DINO: DETR with Improved DeNoising
Anchor Boxes", ICLR 2023), as query groups of the shared decode interface.

Each denoising group holds, per image, ``max_gt`` positive queries (GT boxes moved a little)
followed by ``max_gt`` negative queries (the same GT boxes moved more), where ``max_gt`` is the
largest number of objects of any image in the batch; images with fewer objects leave the rest
of their slots as padding (zero content, box (0.5, 0.5, 0.5, 0.5)). Labels are flipped to a
random class with probability ``label_noise_ratio / 2``.

Box noise, with lambda = ``box_noise_scale`` and (w, h) the GT size: every corner coordinate of
the (x1, y1, x2, y2) box moves by ``s * u * lambda * (w / 2 or h / 2)`` with a random sign s and
u uniform in [0, 1) for positives and [1, 2) for negatives; the result is clipped to [0, 1].
So a positive stays within lambda half-sizes of its GT and a negative is at least that far.

Every group is a :class:`~clock_distill.modeling.detr.QueryGroup` with ``attend_to_main``: the
decoder's block mask lets a denoising query see its own group and the matching queries, and
keeps the matching queries from seeing any denoising query (:func:`dn_attention_mask` writes the
same rule as one matrix in DINO's layout). The losses need no matching: positive j of a group
is assigned to GT j (:func:`dn_match_indices`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .detr import DecoderOutput, QueryGroup
from .layers import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh

__all__ = ["CDNQueries", "build_cdn_queries", "dn_match_indices", "dn_attention_mask", "DenoisingTraining"]


@dataclass
class CDNQueries:
    """Denoising groups built from one batch's targets.

    groups: ``num_groups`` QueryGroups of 2 * max_gt queries each: content (B, 2*max_gt, D)
        from the label embedding, reference (B, 2*max_gt, 4) noised boxes.
    num_groups: G.
    max_gt: positives (and negatives) per image and group.
    labels: (B, G, 2*max_gt) the (noised) class of each query, -1 on padding.
    boxes: (B, G, 2*max_gt, 4) the noised boxes (cxcywh), as in the references.
    """

    groups: List[QueryGroup]
    num_groups: int
    max_gt: int
    labels: Tensor
    boxes: Tensor

    @property
    def group_size(self) -> int:
        return 2 * self.max_gt


def _num_groups(dn_number: int, max_gt: int) -> int:
    """DINO's budget: about ``dn_number`` positives per image, so dn_number // max_gt groups (>= 1)."""
    return max(1, dn_number // max_gt)


def build_cdn_queries(
    targets: Sequence[Dict[str, Tensor]],
    label_enc: nn.Embedding,
    dn_number: int,
    label_noise_ratio: float,
    box_noise_scale: float,
    generator: Optional[torch.Generator] = None,
) -> Optional[CDNQueries]:
    """Noised GT queries for contrastive denoising; None when there is nothing to denoise
    (``dn_number`` is 0 or no image of the batch has an object).

    Args:
        targets: B dicts with "labels" (n_i,) int64 in [0, C) and "boxes" (n_i, 4) cxcywh in [0, 1].
        label_enc: (C, D) embedding of class labels, the content of the denoising queries.
        dn_number: positive-query budget per image; the number of groups is dn_number // max_i n_i.
        label_noise_ratio: twice the probability of a label flip (DINO's convention).
        box_noise_scale: lambda above; 0 disables box noise (negatives then equal positives).
        generator: random source (for tests); the global one by default.
    """
    if dn_number <= 0:
        return None
    counts = [int(t["labels"].shape[0]) for t in targets]
    max_gt = max(counts, default=0)
    if max_gt == 0:
        return None
    B, G, P = len(targets), _num_groups(dn_number, max_gt), max_gt
    num_classes, D = label_enc.weight.shape
    device = label_enc.weight.device
    labels = torch.full((B, G, 2, P), -1, dtype=torch.long, device=device)
    boxes = torch.full((B, G, 2, P, 4), 0.5, dtype=label_enc.weight.dtype, device=device)
    for b, t in enumerate(targets):
        n = counts[b]
        if n == 0:
            continue
        gt_labels = t["labels"].to(device)
        gt_boxes = t["boxes"].to(device=device, dtype=boxes.dtype)
        lab = gt_labels.expand(G, 2, n).clone()
        if label_noise_ratio > 0:
            flip = torch.rand(lab.shape, generator=generator, device=device) < label_noise_ratio * 0.5
            random_labels = torch.randint(0, num_classes, lab.shape, generator=generator, device=device)
            lab = torch.where(flip, random_labels, lab)
        bx = gt_boxes.expand(G, 2, n, 4)
        if box_noise_scale > 0:
            xyxy = box_cxcywh_to_xyxy(bx)
            half = torch.cat([bx[..., 2:] / 2, bx[..., 2:] / 2], -1)  # per corner coordinate
            sign = torch.randint(0, 2, bx.shape, generator=generator, device=device).to(bx.dtype) * 2 - 1
            u = torch.rand(bx.shape, generator=generator, device=device, dtype=bx.dtype)
            u[:, 1] += 1.0  # negatives
            xyxy = (xyxy + sign * u * half * box_noise_scale).clamp(0.0, 1.0)
            bx = box_xyxy_to_cxcywh(xyxy)
        # DINO takes the logit of these boxes with eps 1e-3: keep them as far from 0 and 1.
        bx = bx.clamp(1e-3, 1 - 1e-3)
        labels[b, :, :, :n] = lab
        boxes[b, :, :, :n] = bx
    labels, boxes = labels.flatten(2), boxes.flatten(2, 3)  # (B, G, 2P), (B, G, 2P, 4)
    content = label_enc(labels.clamp(min=0)) * (labels >= 0)[..., None].to(label_enc.weight.dtype)
    groups = [
        QueryGroup(content[:, g], boxes[:, g], None, attend_to_main=True, name="dn") for g in range(G)
    ]
    return CDNQueries(groups, G, P, labels, boxes)


def dn_match_indices(counts: Sequence[int], num_groups: int, max_gt: int) -> List[Tuple[Tensor, Tensor]]:
    """Fixed assignment of the denoising queries, concatenated group after group
    (G * 2 * max_gt queries per image): positive j of every group predicts GT j.

    counts: objects per image. Returns B pairs (query index, GT index), each (G * n_i,) int64.
    """
    out = []
    for n in counts:
        gt = torch.arange(n).repeat(num_groups)
        query = (torch.arange(num_groups) * 2 * max_gt)[:, None].add(torch.arange(n)[None]).flatten()
        out.append((query, gt))
    return out


def dn_attention_mask(num_groups: int, group_size: int, num_queries: int, device=None) -> Tensor:
    """DINO's self-attention mask for [G denoising groups of ``group_size``; ``num_queries``
    matching queries], all in one sequence, as DINO's ``prepare_for_cdn`` builds it.

    Returns (T, T) bool with T = G * group_size + num_queries, True = blocked: a denoising
    query sees its own group and the matching queries; a matching query sees only the matching
    queries. The shared decoder applies the same rule with group 0 kept apart
    (``DETRBase.decode``); this form is for checking and for inspecting attention.
    """
    pad = num_groups * group_size
    total = pad + num_queries
    mask = torch.zeros(total, total, dtype=torch.bool, device=device)
    mask[pad:, :pad] = True
    for g in range(num_groups):
        rows = slice(g * group_size, (g + 1) * group_size)
        mask[rows, : g * group_size] = True
        mask[rows, (g + 1) * group_size : pad] = True
    return mask


class DenoisingTraining:
    """Contrastive denoising for a :class:`~clock_distill.modeling.detr.DETRBase` subclass (put
    it first among the bases): DINO always, DAB-DETR as an option (``dn_number > 0``: DN-DAB-DETR,
    with DINO's contrastive groups).

    The subclass calls :meth:`init_denoising` in ``__init__`` and :meth:`add_dn_groups` at the
    end of ``build_query_groups``; :meth:`losses` then adds the denoising losses ``*_dn`` (last
    layer) and ``*_dn_{i}`` (earlier layers), normalized by num_boxes * G, without matching.
    """

    def init_denoising(self, dn_number: int, label_noise_ratio: float, box_noise_scale: float, enabled: bool = True):
        """``label_enc`` (C, D), the content of the denoising queries, exists when ``enabled``;
        without it the model has no denoising keys, parameters or losses (a DAB-DETR without DN
        keeps its checkpoint layout)."""
        self.dn_number = dn_number
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.label_enc = nn.Embedding(self.num_classes, self.embed_dim) if enabled else None

    def add_dn_groups(self, groups: List[QueryGroup], extras: Dict, targets: Optional[List[Dict]]) -> None:
        """In training, append the denoising groups of ``targets`` to ``groups`` and describe
        them in ``extras["dn"]`` (None when there are none). A model without denoising adds
        neither."""
        if self.label_enc is None:
            return
        extras["dn"] = None
        if not self.training or targets is None:
            return
        dn = build_cdn_queries(targets, self.label_enc, self.dn_number, self.label_noise_ratio, self.box_noise_scale)
        if dn is not None:
            groups += dn.groups
            extras["dn"] = dn

    def losses(self, outputs: List[DecoderOutput], extras: Dict, targets: List[Dict]) -> Dict[str, Tensor]:
        """Matching losses of group 0 (+ aux and encoder terms), and the denoising losses."""
        losses = super().losses(outputs[:1], extras, targets)
        if self.label_enc is not None:
            losses.update(self.dn_losses(outputs[1:], extras["dn"], targets))
        return losses

    def dn_losses(self, dn_outputs: List[DecoderOutput], dn: Optional[CDNQueries], targets: List[Dict]) -> Dict[str, Tensor]:
        num_layers = len(self.decoder_layers)
        suffixes = ["_dn"] + [f"_dn_{i}" for i in range(num_layers - 1)] if self.aux_loss else ["_dn"]
        if dn is None:
            # Same keys and a graph through label_enc, so every DDP rank reduces the same
            # parameters whether or not its batch had objects (or denoising is off); and the
            # same collectives: the ranks with objects all-reduce their box count here.
            self.criterion.get_num_boxes(targets, self.device)
            zero = self.label_enc.weight.sum() * 0.0
            return {k + s: zero for s in suffixes for k in self.criterion.loss_keys}
        counts = [int(t["labels"].shape[0]) for t in targets]
        indices = dn_match_indices(counts, dn.num_groups, dn.max_gt)
        num_boxes = self.criterion.get_num_boxes(targets, self.device) * dn.num_groups
        layers = [num_layers - 1] + (list(range(num_layers - 1)) if self.aux_loss else [])
        losses = {}
        for layer, suffix in zip(layers, suffixes):
            out = {
                "pred_logits": torch.cat([o.logits[layer] for o in dn_outputs], 1),
                "pred_boxes": torch.cat([o.boxes[layer] for o in dn_outputs], 1),
            }
            losses.update(self.criterion.compute_losses(out, targets, indices, num_boxes, suffix=suffix))
        return losses
