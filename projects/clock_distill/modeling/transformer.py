"""Transformer layers shared by the DETR families.

Shapes: B batch, N = sum_l H_l*W_l memory tokens over L levels, Q queries, D channels.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import MLP, MultiScaleDeformableAttention

__all__ = [
    "FFN",
    "prediction_heads",
    "EncoderProposals",
    "DeformableEncoderLayer",
    "DeformableEncoder",
    "DeformableDecoderLayer",
    "deformable_decoder_layers",
    "sine_embed_boxes",
    "encoder_reference_points",
    "encoder_output_proposals",
    "reference_for_levels",
    "self_attention",
]


class FFN(nn.Module):
    """Post-norm feed-forward block: norm(x + dropout(W2 relu(W1 x)))."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.dropout2(self.linear2(self.dropout1(F.relu(self.linear1(x))))))


def prediction_heads(embed_dim: int, num_classes: int) -> Tuple[nn.Linear, MLP]:
    """A class head (D -> C) and a box head (D -> 4, MLP of 3 layers), initialized as every
    DETR here starts them: class bias at the focal prior p = 0.01 (RetinaNet), box deltas at 0."""
    class_embed = nn.Linear(embed_dim, num_classes)
    bbox_embed = MLP(embed_dim, embed_dim, 4, 3)
    nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))
    nn.init.zeros_(bbox_embed.layers[-1].weight)
    nn.init.zeros_(bbox_embed.layers[-1].bias)
    return class_embed, bbox_embed


def encoder_reference_points(spatial_shapes: Tensor, valid_ratios: Tensor) -> Tensor:
    """Cell centres of every level, for the encoder's deformable self-attention.

    Args:
        spatial_shapes: (L, 2) (H_l, W_l).
        valid_ratios: (B, L, 2) (w, h) fraction of each level that is not padding.
    Returns:
        (B, N, L, 2) normalized (x, y): each token's centre, expressed in every level's padded map.
    """
    refs = []
    for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
        ys, xs = torch.meshgrid(
            torch.linspace(0.5, h - 0.5, h, dtype=valid_ratios.dtype, device=valid_ratios.device),
            torch.linspace(0.5, w - 0.5, w, dtype=valid_ratios.dtype, device=valid_ratios.device),
            indexing="ij",
        )
        # Normalize by the valid (unpadded) extent so that 1.0 is the image border.
        x = xs.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
        y = ys.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
        refs.append(torch.stack((x, y), -1))
    ref = torch.cat(refs, 1)  # (B, N, 2)
    return ref[:, :, None] * valid_ratios[:, None]


def reference_for_levels(reference: Tensor, valid_ratios: Tensor) -> Tensor:
    """Scale image-normalized references into every level's padded map.

    reference: (B, Q, 2) points or (B, Q, 4) boxes in [0, 1] of the unpadded image.
    valid_ratios: (B, L, 2). Returns (B, Q, L, 2 or 4).
    """
    if reference.shape[-1] == 4:
        return reference[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
    return reference[:, :, None] * valid_ratios[:, None]


class DeformableEncoderLayer(nn.Module):
    """Multi-scale deformable self-attention over the flattened memory, then the FFN (post-norm)."""

    def __init__(self, d_model=256, d_ffn=1024, dropout=0.0, n_heads=8, n_levels=4, n_points=4):
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(d_model, n_heads, n_levels, n_points, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model, d_ffn, dropout)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, padding_mask):
        """src, pos: (B, N, D); reference_points: (B, N, L, 2); padding_mask: (B, N). Returns (B, N, D)."""
        out = self.self_attn(src, reference_points, src, spatial_shapes, level_start_index, padding_mask, query_pos=pos)
        return self.ffn(self.norm(src + out))


class DeformableEncoder(nn.Module):
    """A stack of deformable encoder layers (Deformable DETR, DINO)."""

    def __init__(self, num_layers=6, d_model=256, d_ffn=1024, dropout=0.0, n_heads=8, n_levels=4, n_points=4):
        super().__init__()
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(d_model, d_ffn, dropout, n_heads, n_levels, n_points) for _ in range(num_layers)
        )

    def forward(self, src, pos, spatial_shapes, level_start_index, valid_ratios, padding_mask):
        """src, pos: (B, N, D); valid_ratios: (B, L, 2); padding_mask: (B, N). Returns memory (B, N, D)."""
        reference_points = encoder_reference_points(spatial_shapes, valid_ratios)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return src


def self_attention(
    attn: nn.MultiheadAttention,
    tgt: Tensor,
    pos: Tensor,
    kv_prefix: Optional[Tuple[Tensor, Tensor]] = None,
    attn_mask: Optional[Tensor] = None,
) -> Tensor:
    """Query self-attention, optionally also attending to a prefix of other queries.

    tgt, pos: (B, Q, D). kv_prefix: (tgt, pos) of the main query group, (B, Q0, D), placed
    before this group's keys. attn_mask: (Q, Q0 + Q) or (Q, Q) bool, True = blocked.
    Returns (B, Q, D), without residual.
    """
    q = tgt + pos
    k, v = q, tgt
    if kv_prefix is not None:
        k = torch.cat([kv_prefix[0] + kv_prefix[1], k], 1)
        v = torch.cat([kv_prefix[0], v], 1)
    return attn(q, k, v, attn_mask=attn_mask, need_weights=False)[0]


class DeformableDecoderLayer(nn.Module):
    """Self-attention among queries, deformable cross-attention into the memory, FFN (post-norm).

    Used by Deformable DETR and DINO. ``forward`` takes a query group's state; the shared
    decode loop (``DETRBase.decode``) calls it once per isolated stream of queries.
    """

    def __init__(self, d_model=256, d_ffn=1024, dropout=0.0, n_heads=8, n_levels=4, n_points=4):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MultiScaleDeformableAttention(d_model, n_heads, n_levels, n_points, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model, d_ffn, dropout)

    def forward(self, tgt, pos, reference, enc, kv_prefix=None, attn_mask=None, return_attention=False):
        """
        Args:
            tgt, pos: (B, Q, D) content and positional queries.
            reference: (B, Q, 2) points or (B, Q, 4) boxes, normalized to the unpadded image.
            enc: the EncoderOutput (memory, spatial_shapes, level_start_index, valid_ratios, padding_mask).
            kv_prefix, attn_mask: see :func:`self_attention`.
            return_attention: also return the cross-attention's sampling locations and weights
                (see :class:`MultiScaleDeformableAttention`).
        Returns:
            (B, Q, D); with ``return_attention``, ``(tgt, attention)``.
        """
        tgt = self.norm1(tgt + self.dropout(self_attention(self.self_attn, tgt, pos, kv_prefix, attn_mask)))
        res = self.cross_attn(
            tgt,
            reference_for_levels(reference, enc.valid_ratios),
            enc.memory,
            enc.spatial_shapes,
            enc.level_start_index,
            enc.padding_mask,
            query_pos=pos,
            return_attention=return_attention,
        )
        out, attention = res if return_attention else (res, None)
        tgt = self.ffn(self.norm2(tgt + out))
        return (tgt, attention) if return_attention else tgt


def encoder_output_proposals(memory: Tensor, padding_mask: Tensor, spatial_shapes: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-token box proposals for two-stage query selection (Deformable DETR two-stage, DINO).

    Each token proposes a box centred on its cell with side 0.05 * 2**level (of the unpadded
    image). Proposals too close to the border, and padded tokens, are marked invalid.

    Args:
        memory: (B, N, D); padding_mask: (B, N) bool, True on padding; spatial_shapes: (L, 2).
    Returns:
        output_memory (B, N, D): memory with invalid tokens zeroed;
        proposals (B, N, 4): unsigmoided (inverse-sigmoid) boxes, +inf where invalid.
    """
    B = memory.shape[0]
    proposals = []
    start = 0
    for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
        mask = padding_mask[:, start : start + h * w].view(B, h, w)
        valid_h = (~mask[:, :, 0]).sum(1)
        valid_w = (~mask[:, 0, :]).sum(1)
        ys, xs = torch.meshgrid(
            torch.linspace(0, h - 1, h, dtype=memory.dtype, device=memory.device),
            torch.linspace(0, w - 1, w, dtype=memory.dtype, device=memory.device),
            indexing="ij",
        )
        grid = torch.stack([xs, ys], -1)  # (h, w, 2)
        scale = torch.stack([valid_w, valid_h], -1).to(memory.dtype).view(B, 1, 1, 2)
        grid = (grid[None] + 0.5) / scale
        wh = torch.full_like(grid, 0.05 * (2.0**lvl))
        proposals.append(torch.cat([grid, wh], -1).view(B, -1, 4))
        start += h * w
    proposals = torch.cat(proposals, 1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    proposals = torch.log(proposals / (1 - proposals))
    invalid = padding_mask.unsqueeze(-1) | ~valid
    proposals = proposals.masked_fill(invalid, float("inf"))
    output_memory = memory.masked_fill(invalid, 0.0)
    return output_memory, proposals


class EncoderProposals(nn.Module):
    """Two-stage query selection (Deformable DETR two-stage, DINO).

    Every valid memory token proposes a box (:func:`encoder_output_proposals`); a linear layer
    and LayerNorm on the memory feed a class head and a box head that scores and refines each
    proposal; the ``k`` best become the decoder's initial reference boxes.

    Args:
        embed_dim: D.
        num_classes: C, the width of the proposal class head.
        class_agnostic: score a proposal by logit channel 0 (Deformable DETR, whose criterion
            trains that channel on all objects, ``enc_binary_labels=True``); otherwise by the
            maximum over classes (DINO, trained with the real labels).
        loss_on_topk: give the criterion only the k selected proposals (DINO's code: its
            "interm" loss) instead of every token (Deformable DETR two-stage).
    """

    def __init__(self, embed_dim: int, num_classes: int, class_agnostic: bool, loss_on_topk: bool = False):
        super().__init__()
        self.loss_on_topk = loss_on_topk
        self.output = nn.Linear(embed_dim, embed_dim)
        self.output_norm = nn.LayerNorm(embed_dim)
        self.class_embed, self.bbox_embed = prediction_heads(embed_dim, num_classes)
        self.class_agnostic = class_agnostic

    def forward(self, enc, k: int) -> Tuple[Tensor, Dict[str, Tensor]]:
        """
        Args:
            enc: EncoderOutput (memory (B, N, D), padding_mask (B, N), spatial_shapes (L, 2)).
            k: number of proposals to keep (at most N).
        Returns:
            boxes: (B, k, 4) the top-k refined proposals, cxcywh in [0, 1], detached (the
                decoder's first references carry no gradient into the encoder heads);
            enc_outputs: {"pred_logits": (B, N, C), "pred_boxes": (B, N, 4)} for every token
                (or (B, k, ·) for the selected ones, ``loss_on_topk``), for the criterion's
                ``_enc`` terms.
        """
        memory, proposals = encoder_output_proposals(enc.memory, enc.padding_mask, enc.spatial_shapes)
        memory = self.output_norm(self.output(memory))
        logits = self.class_embed(memory)  # (B, N, C)
        coords_unact = self.bbox_embed(memory) + proposals  # (B, N, 4), +inf on invalid tokens
        scores = logits[..., 0] if self.class_agnostic else logits.max(-1).values
        topk = scores.topk(min(k, scores.shape[1]), dim=1).indices
        selected = torch.gather(coords_unact, 1, topk[..., None].expand(-1, -1, 4))
        boxes = selected.detach().sigmoid()
        if self.loss_on_topk:
            sel_logits = torch.gather(logits, 1, topk[..., None].expand(-1, -1, logits.shape[-1]))
            return boxes, {"pred_logits": sel_logits, "pred_boxes": selected.sigmoid()}
        return boxes, {"pred_logits": logits, "pred_boxes": coords_unact.sigmoid()}


def sine_embed_boxes(boxes: Tensor, num_pos_feats: int = 128, temperature: float = 10000.0) -> Tensor:
    """Deformable DETR two-stage embedding of proposal boxes: (B, Q, 4) in [0,1] -> (B, Q, 4*num_pos_feats).

    Plain (x, y, w, h) order with sin/cos interleaved, scale 2*pi, as the two-stage
    ``get_proposal_pos_embed`` does (DAB/DINO use ``get_sine_pos_embed`` instead).
    """
    dim_t = torch.arange(num_pos_feats, dtype=boxes.dtype, device=boxes.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    pos = boxes[..., None] * (2 * math.pi) / dim_t  # (B, Q, 4, F)
    pos = torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), -1).flatten(-2)
    return pos.flatten(-2)


def deformable_decoder_layers(
    num_layers: int = 6, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.0,
    n_heads: int = 8, n_levels: int = 4, n_points: int = 4,
) -> nn.ModuleList:
    """``num_layers`` DeformableDecoderLayers (independent weights), for LazyCall configs."""
    return nn.ModuleList(
        DeformableDecoderLayer(d_model, d_ffn, dropout, n_heads, n_levels, n_points) for _ in range(num_layers)
    )
