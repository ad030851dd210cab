"""Deformable DETR (Zhu et al., 2021): plain, +box refinement, +two-stage.

Only what differs from the shared core: learned queries with 2-d reference points (plain,
box refinement), or the top-k encoder proposals as reference boxes and query embeddings
(two-stage).
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional

import torch
from torch import nn

from .detr import DETRBase, EncoderOutput, QueryGroup
from .transformer import encoder_output_proposals, sine_embed_boxes

__all__ = ["DeformableDETR"]


class DeformableDETR(DETRBase):
    """Deformable DETR as a detectron2 meta-architecture.

    Args (beyond :class:`DETRBase`):
        with_box_refine: every decoder layer refines the boxes, with its own heads.
        as_two_stage: queries come from the top-``num_queries`` encoder proposals, scored by a
            class-agnostic head trained on the encoder output (criterion term ``*_enc``).
    """

    def __init__(self, *args, with_box_refine: bool = False, as_two_stage: bool = False, **kwargs):
        kwargs.setdefault("share_heads", not with_box_refine)
        super().__init__(*args, box_refine=with_box_refine, **kwargs)
        self.with_box_refine = with_box_refine
        self.as_two_stage = as_two_stage
        D = self.embed_dim
        if as_two_stage:
            self.enc_output = nn.Linear(D, D)
            self.enc_output_norm = nn.LayerNorm(D)
            self.enc_class_embed = copy.deepcopy(self.class_embed[0])
            self.enc_bbox_embed = copy.deepcopy(self.bbox_embed[0])
            self.pos_trans = nn.Linear(2 * D, 2 * D)
            self.pos_trans_norm = nn.LayerNorm(2 * D)
        else:
            # Reference init: first-layer boxes start small (w = h = sigmoid(-2) = 0.12), not 0.5.
            nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
            self.query_embedding = nn.Embedding(self.num_queries, 2 * D)
            self.reference_points = nn.Linear(D, 2)
            nn.init.xavier_uniform_(self.reference_points.weight)
            nn.init.zeros_(self.reference_points.bias)

    def build_query_groups(self, enc: EncoderOutput, targets: Optional[List[Dict]]):
        """Group 0: (B, num_queries) learned queries or top-k proposals; extras hold the
        encoder proposals' outputs for the two-stage loss."""
        B, D = enc.memory.shape[0], self.embed_dim
        if not self.as_two_stage:
            pos, content = self.query_embedding.weight.split(D, dim=1)
            pos = pos[None].expand(B, -1, -1)
            content = content[None].expand(B, -1, -1)
            reference = self.reference_points(pos).sigmoid()  # (B, Q, 2)
            return [QueryGroup(content, reference, pos)], {}

        memory, proposals = encoder_output_proposals(enc.memory, enc.padding_mask, enc.spatial_shapes)
        memory = self.enc_output_norm(self.enc_output(memory))
        enc_logits = self.enc_class_embed(memory)  # (B, N, C)
        enc_coords_unact = self.enc_bbox_embed(memory) + proposals  # (B, N, 4), +inf on invalid tokens
        k = min(self.num_queries, enc_logits.shape[1])
        # The encoder head is trained class-agnostically (all labels 0), so class 0 scores objectness.
        topk = enc_logits[..., 0].topk(k, dim=1).indices
        coords = torch.gather(enc_coords_unact, 1, topk[..., None].expand(-1, -1, 4)).detach().sigmoid()
        pos, content = self.pos_trans_norm(self.pos_trans(sine_embed_boxes(coords, D // 2))).split(D, dim=-1)
        extras = {"enc_outputs": {"pred_logits": enc_logits, "pred_boxes": enc_coords_unact.sigmoid()}}
        return [QueryGroup(content, coords, pos)], extras
