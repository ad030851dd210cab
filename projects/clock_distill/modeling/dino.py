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

from torch import nn

from .denoising import DenoisingTraining
from .detr import DETRBase, EncoderOutput, QueryGroup
from .transformer import EncoderProposals

__all__ = ["DINO"]


class DINO(DenoisingTraining, DETRBase):
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
        D = self.embed_dim
        self.proposals = EncoderProposals(D, self.num_classes, class_agnostic=False, loss_on_topk=enc_loss_topk)
        self.tgt_embed = nn.Embedding(self.num_queries, D)
        self.init_denoising(dn_number, label_noise_ratio, box_noise_scale)
        self.xavier_init_transformer()  # DINO's DeformableTransformer._reset_parameters

    def build_query_groups(self, enc: EncoderOutput, targets: Optional[List[Dict]]):
        """Group 0: learned content (B, num_queries, D) on the top-k proposal boxes (B, Q, 4).
        In training, the denoising groups follow (``extras["dn"]`` describes them)."""
        B = enc.memory.shape[0]
        boxes, enc_outputs = self.proposals(enc, self.num_queries)
        content = self.tgt_embed.weight[: boxes.shape[1]][None].expand(B, -1, -1)
        groups = [QueryGroup(content, boxes, None, name="main")]
        extras = {"enc_outputs": enc_outputs}
        self.add_dn_groups(groups, extras, targets)
        return groups, extras
