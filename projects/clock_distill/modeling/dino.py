"""DINO (Zhang et al., "DINO: DETR with Improved DeNoising Anchor Boxes", ICLR 2023).

Only what differs from the shared core:

- mixed query selection: the top-k encoder proposals (:class:`EncoderProposals`, scored by their
  best class) give the reference boxes; the content queries are learned (``tgt_embed``);
- contrastive denoising groups (:mod:`.denoising`) decoded as extra query groups of the same
  ``decode`` call, and their losses on the fixed assignment, without matching;
- anchor-derived positional queries at every layer, box refinement with look-forward-twice
  (all in the core), and the encoder loss with the real class labels.

The encoder and decoder layers are Deformable DETR's (multi-scale deformable attention).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from .denoising import build_cdn_queries, dn_match_indices
from .detr import DecoderOutput, DETRBase, EncoderOutput, QueryGroup
from .transformer import EncoderProposals

__all__ = ["DINO"]


class DINO(DETRBase):
    """DINO as a detectron2 meta-architecture.

    Defaults that differ from :class:`DETRBase`: box refinement with look-forward-twice,
    anchor-derived positional queries, heads shared by all decoder layers (DINO's default).
    The decoder norm (``decoder_norm``) is given by the config.

    Args (beyond :class:`DETRBase`):
        dn_number: denoising budget: about this many positive (and as many negative) denoising
            queries per image in training; 0 disables denoising.
        label_noise_ratio: a denoising label is flipped with probability label_noise_ratio / 2.
        box_noise_scale: lambda of the box noise (:mod:`.denoising`).
        enc_loss_topk: the encoder loss on the ``num_queries`` selected proposals only, as
            DINO's code does; the default (False) trains every encoder token (a deviation kept
            until measured on the tune split; see the README).
    """

    def __init__(
        self, *args, dn_number: int = 100, label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0,
        enc_loss_topk: bool = False, **kwargs
    ):
        kwargs.setdefault("share_heads", True)
        kwargs.setdefault("look_forward_twice", True)
        super().__init__(*args, box_refine=True, anchor_query_pos=True, **kwargs)
        if getattr(self.criterion, "enc_binary_labels", False):
            raise ValueError("DINO trains its encoder proposals with the real labels: set criterion.enc_binary_labels=False")
        self.dn_number = dn_number
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        D = self.embed_dim
        self.proposals = EncoderProposals(D, self.num_classes, class_agnostic=False, loss_on_topk=enc_loss_topk)
        self.tgt_embed = nn.Embedding(self.num_queries, D)
        self.label_enc = nn.Embedding(self.num_classes, D)
        self.xavier_init_transformer()  # DINO's DeformableTransformer._reset_parameters

    def build_query_groups(self, enc: EncoderOutput, targets: Optional[List[Dict]]):
        """Group 0: learned content (B, num_queries, D) on the top-k proposal boxes (B, Q, 4).
        In training, the denoising groups follow (``extras["dn"]`` describes them)."""
        B = enc.memory.shape[0]
        boxes, enc_outputs = self.proposals(enc, self.num_queries)
        content = self.tgt_embed.weight[: boxes.shape[1]][None].expand(B, -1, -1)
        groups = [QueryGroup(content, boxes, None, name="main")]
        extras = {"enc_outputs": enc_outputs, "dn": None}
        if self.training and targets is not None:
            dn = build_cdn_queries(targets, self.label_enc, self.dn_number, self.label_noise_ratio, self.box_noise_scale)
            if dn is not None:
                groups += dn.groups
                extras["dn"] = dn
        return groups, extras

    def losses(self, outputs: List[DecoderOutput], extras: Dict, targets: List[Dict]) -> Dict[str, Tensor]:
        """Matching losses of group 0 (+ aux and encoder terms), and the denoising losses
        ``*_dn`` (last layer) and ``*_dn_{i}`` (earlier layers), normalized by num_boxes * G."""
        losses = super().losses(outputs[:1], extras, targets)
        losses.update(self.dn_losses(outputs[1:], extras["dn"], targets))
        return losses

    def dn_losses(self, dn_outputs: List[DecoderOutput], dn, targets: List[Dict]) -> Dict[str, Tensor]:
        num_layers = len(self.decoder_layers)
        suffixes = ["_dn"] + [f"_dn_{i}" for i in range(num_layers - 1)] if self.aux_loss else ["_dn"]
        if dn is None:
            # Same keys and a graph through label_enc, so every DDP rank reduces the same
            # parameters whether or not its batch had objects (or denoising is off).
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
