"""Deformable DETR (Zhu et al., 2021): plain, +box refinement, +two-stage.

Only what differs from the shared core: learned queries with 2-d reference points (plain,
box refinement), or the top-k encoder proposals as reference boxes and query embeddings
(two-stage).
"""

from __future__ import annotations

from typing import Dict, List, Optional

from torch import Tensor, nn

from .detr import DETRBase, EncoderOutput, QueryGroup
from .transformer import EncoderProposals, sine_embed_boxes

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
            self.proposals = EncoderProposals(D, self.num_classes, class_agnostic=True)
            self.pos_trans = nn.Linear(2 * D, 2 * D)
            self.pos_trans_norm = nn.LayerNorm(2 * D)
        else:
            # Reference init: first-layer boxes start small (w = h = sigmoid(-2) = 0.12), not 0.5.
            nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
            self.query_embedding = nn.Embedding(self.num_queries, 2 * D)
            self.reference_points = nn.Linear(D, 2)
            nn.init.xavier_uniform_(self.reference_points.weight)
            nn.init.zeros_(self.reference_points.bias)

        self.xavier_init_transformer()  # Deformable DETR's DeformableTransformer._reset_parameters

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

        coords, enc_outputs = self.proposals(enc, self.num_queries)
        pos, content = self.pos_trans_norm(self.pos_trans(sine_embed_boxes(coords, D // 2))).split(D, dim=-1)
        return [QueryGroup(content, coords, pos)], {"enc_outputs": enc_outputs}

    def queries_at(self, boxes: Tensor, content: Tensor, name: str = "distill") -> QueryGroup:
        """Queries at given boxes (B, Q, 4), content (B, Q, D), fed as this model feeds its own.

        - two-stage: the proposal-to-query path (sine embedding of the box, ``pos_trans``,
          ``pos_trans_norm``) gives the positional query; the box is the reference. The path's
          content half is not used (``content`` carries what the caller wants the query to say,
          e.g. the target class); the path is detached so these queries are never learned.
        - plain and box refinement: learned queries have a learned ``pos`` and no box, so the
          positional query is the fixed sine embedding of the box (``sine_embed_boxes``, D/4
          channels per coordinate, the two-stage embedding at width D): it tells the decoder the
          box's centre *and* size, which a 2-d reference point alone cannot. The reference is the
          box with box refinement, its centre (cx, cy) without, as for the learned queries.
        """
        D = self.embed_dim
        if self.as_two_stage:
            pos = self.pos_trans_norm(self.pos_trans(sine_embed_boxes(boxes, D // 2)))[..., :D].detach()
            return QueryGroup(content, boxes, pos, name=name)
        pos = sine_embed_boxes(boxes, D // 4).to(content.dtype)
        reference = boxes if self.with_box_refine else boxes[..., :2]
        return QueryGroup(content, reference, pos, name=name)
