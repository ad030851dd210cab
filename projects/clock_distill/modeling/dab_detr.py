"""DAB-DETR (Liu et al., "DAB-DETR: Dynamic Anchor Boxes are Better Queries for DETR", ICLR 2022).

Only what differs from the shared core:

- single scale: the C5 feature, a standard multi-head self-attention encoder whose positional
  encoding is rescaled by the content (``query_scale``);
- queries are learned anchor boxes (cx, cy, w, h) with zero content. Every layer derives the
  positional query from the current anchor (``DETRBase.query_pos``: an MLP on the anchor's sine
  embedding) and refines the anchor (``box_refine``, shared heads);
- conditional cross-attention whose positional part is modulated by the anchor's width and
  height (:class:`ConditionalCrossAttention`, :class:`DABDecoderLayer`);
- optionally (``dn_number > 0``) denoising training, DN-DAB-DETR (Li et al., "DN-DETR", CVPR
  2022), here with DINO's contrastive groups (:class:`~.denoising.DenoisingTraining`).

Shapes: B batch, N = H*W memory tokens (one level), Q queries, D channels.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .denoising import DenoisingTraining
from .detr import DETRBase, EncoderOutput, QueryGroup
from .layers import MLP, get_sine_pos_embed
from .transformer import FFN, self_attention

__all__ = ["TransformerEncoderLayer", "DABEncoder", "ConditionalCrossAttention", "DABDecoderLayer",
           "dab_decoder_layers", "DABDETR"]


class TransformerEncoderLayer(nn.Module):
    """Standard post-norm encoder layer: multi-head self-attention (q = k = src + pos, v = src)
    over all tokens with the padding masked out, then the FFN."""

    def __init__(self, d_model: int = 256, d_ffn: int = 2048, dropout: float = 0.0, n_heads: int = 8):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model, d_ffn, dropout)

    def forward(self, src: Tensor, pos: Tensor, padding_mask: Tensor) -> Tensor:
        """src, pos: (B, N, D); padding_mask: (B, N) True on padding. Returns (B, N, D)."""
        q = src + pos
        out = self.self_attn(q, q, src, key_padding_mask=padding_mask, need_weights=False)[0]
        return self.ffn(self.norm(src + self.dropout(out)))


class DABEncoder(nn.Module):
    """DAB-DETR's encoder: before each layer the positional encoding is scaled channel-wise by an
    MLP of the current tokens (``pos * query_scale(src)``), as in DAB-DETR and Conditional DETR."""

    def __init__(self, num_layers: int = 6, d_model: int = 256, d_ffn: int = 2048, dropout: float = 0.0, n_heads: int = 8):
        super().__init__()
        self.layers = nn.ModuleList(TransformerEncoderLayer(d_model, d_ffn, dropout, n_heads) for _ in range(num_layers))
        self.query_scale = MLP(d_model, d_model, d_model, 2)

    def forward(self, src, pos, spatial_shapes, level_start_index, valid_ratios, padding_mask):
        """The core's encoder signature; src, pos: (B, N, D), padding_mask: (B, N). Returns (B, N, D).
        ``spatial_shapes``, ``level_start_index`` and ``valid_ratios`` are not needed by global attention."""
        for layer in self.layers:
            src = layer(src, pos * self.query_scale(src), padding_mask)
        return src


class ConditionalCrossAttention(nn.Module):
    """Cross-attention with separate content and positional parts (Conditional DETR, DAB-DETR).

    Per head, the query is ``[q_content ; q_pos]`` and the key ``[k_content ; k_pos]``
    concatenated (2 * D / heads channels), so each attention logit is content.content +
    position.position; values are the projected memory. The first decoder layer also adds the
    positional query and key to the content parts (DAB-DETR's ``keep_query_pos`` for layer 0);
    only that layer has the ``q_pos`` projection, so that no parameter goes unused (DDP).
    """

    def __init__(self, d_model: int = 256, n_heads: int = 8, dropout: float = 0.0, first_layer: bool = False):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be a multiple of n_heads={n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.q_content = nn.Linear(d_model, d_model)
        self.first_layer = first_layer
        self.q_pos = nn.Linear(d_model, d_model) if first_layer else None
        self.q_sine = nn.Linear(d_model, d_model)
        self.k_content = nn.Linear(d_model, d_model)
        self.k_pos = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, tgt, query_pos, query_sine, memory, memory_pos, padding_mask, return_attention: bool = False):
        """
        Args:
            tgt, query_pos: (B, Q, D) content and positional queries.
            query_sine: (B, Q, D) the (modulated) sine embedding of the anchor centres.
            memory, memory_pos: (B, N, D); padding_mask: (B, N) True on padding.
            return_attention: also return the attention weights (inspection).
        Returns:
            (B, Q, D), without residual; with ``return_attention``, ``(out, {"attention_weights":
            (B, Q, M, N)})``, each head's softmax over the memory cells (0 on padding).
        """
        B, Q, D = tgt.shape
        N, h = memory.shape[1], self.n_heads
        q, k, k_pos = self.q_content(tgt), self.k_content(memory), self.k_pos(memory_pos)
        if self.first_layer:
            q = q + self.q_pos(query_pos)
            k = k + k_pos
        q = torch.cat([q.view(B, Q, h, -1), self.q_sine(query_sine).view(B, Q, h, -1)], -1).transpose(1, 2)
        k = torch.cat([k.view(B, N, h, -1), k_pos.view(B, N, h, -1)], -1).transpose(1, 2)
        v = self.v(memory).view(B, N, h, -1).transpose(1, 2)
        # SDPA's boolean mask marks the keys that take part; scale 1/sqrt(2 D / heads).
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=~padding_mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )
        out = self.out_proj(out.transpose(1, 2).reshape(B, Q, D))
        if not return_attention:
            return out
        # The same softmax SDPA computed, spelled out (SDPA does not return its weights).
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        weights = logits.masked_fill(padding_mask[:, None, None, :], float("-inf")).softmax(-1)
        return out, {"attention_weights": weights.transpose(1, 2).detach()}


class DABDecoderLayer(nn.Module):
    """DAB-DETR decoder layer: query self-attention, conditional cross-attention with
    width/height-modulated positional queries, FFN (post-norm).

    ``query_scale`` (content -> D scales of the anchor-centre embedding; None on the first
    layer, which uses 1) and ``ref_anchor_head`` (content -> 2 reference sizes (w, h)) are
    shared by all layers, as in DAB-DETR; :func:`dab_decoder_layers` wires them.
    """

    def __init__(
        self,
        d_model: int = 256,
        d_ffn: int = 2048,
        dropout: float = 0.0,
        n_heads: int = 8,
        query_scale: Optional[nn.Module] = None,
        ref_anchor_head: Optional[nn.Module] = None,
        first_layer: bool = False,
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = ConditionalCrossAttention(d_model, n_heads, dropout, first_layer)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FFN(d_model, d_ffn, dropout)
        self.query_scale = query_scale
        self.ref_anchor_head = ref_anchor_head

    def anchor_sine(self, tgt: Tensor, anchors: Tensor) -> Tensor:
        """The cross-attention's positional query: the (y, x) sine embedding of the anchor centres
        (D/2 channels each), scaled by ``query_scale(tgt)`` and, per coordinate, by
        w_ref / w (x channels) and h_ref / h (y channels), where (w_ref, h_ref) =
        sigmoid(ref_anchor_head(tgt)). A wider anchor flattens the x profile of the attention.

        tgt: (B, Q, D); anchors: (B, Q, 4) cxcywh in [0, 1]. Returns (B, Q, D).
        """
        D = tgt.shape[-1]
        sine = get_sine_pos_embed(anchors, D // 2)[..., :D].to(tgt.dtype)  # (y, x) blocks
        if self.query_scale is not None:
            sine = sine * self.query_scale(tgt)
        if self.ref_anchor_head is not None:
            ref_wh = self.ref_anchor_head(tgt).sigmoid()  # (B, Q, 2) as (w, h)
            sine = torch.cat(
                [sine[..., : D // 2] * (ref_wh[..., 1] / anchors[..., 3])[..., None],
                 sine[..., D // 2 :] * (ref_wh[..., 0] / anchors[..., 2])[..., None]],
                -1,
            )
        return sine

    def forward(self, tgt, pos, reference, enc: EncoderOutput, kv_prefix=None, attn_mask=None, return_attention=False):
        """
        Args:
            tgt, pos: (B, Q, D) content and positional queries (pos from the anchors).
            reference: (B, Q, 4) anchor boxes cxcywh, normalized to the unpadded image.
            enc: the EncoderOutput (memory, pos, padding_mask of the single level).
            kv_prefix, attn_mask: see :func:`~clock_distill.modeling.transformer.self_attention`.
            return_attention: also return the cross-attention weights (B, Q, M, N).
        Returns:
            (B, Q, D); with ``return_attention``, ``(tgt, attention)``.
        """
        if reference.shape[-1] != 4:
            raise ValueError(f"DAB-DETR decoder layers need (B, Q, 4) anchor boxes, got {tuple(reference.shape)}")
        sine = self.anchor_sine(tgt, reference)
        tgt = self.norm1(tgt + self.dropout(self_attention(self.self_attn, tgt, pos, kv_prefix, attn_mask)))
        res = self.cross_attn(tgt, pos, sine, enc.memory, enc.pos, enc.padding_mask, return_attention)
        out, attention = res if return_attention else (res, None)
        tgt = self.ffn(self.norm2(tgt + self.dropout(out)))
        return (tgt, attention) if return_attention else tgt


def dab_decoder_layers(
    num_layers: int = 6, d_model: int = 256, d_ffn: int = 2048, dropout: float = 0.0, n_heads: int = 8,
    modulate_hw_attn: bool = True,
) -> nn.ModuleList:
    """``num_layers`` DABDecoderLayers with their shared ``query_scale`` and ``ref_anchor_head``
    (the latter only with ``modulate_hw_attn``), for LazyCall configs."""
    query_scale = MLP(d_model, d_model, d_model, 2)
    ref_anchor_head = MLP(d_model, d_model, 2, 2) if modulate_hw_attn else None
    return nn.ModuleList(
        DABDecoderLayer(
            d_model, d_ffn, dropout, n_heads,
            query_scale=None if i == 0 else query_scale, ref_anchor_head=ref_anchor_head, first_layer=i == 0,
        )
        for i in range(num_layers)
    )


class DABDETR(DenoisingTraining, DETRBase):
    """DAB-DETR as a detectron2 meta-architecture (focal-loss Hungarian training, aux losses).

    Defaults that differ from :class:`DETRBase`: anchor-derived positional queries, box
    refinement at every layer with heads shared by all layers, sine position encoding without
    offset and with temperature 20 (DAB-DETR's), a single feature level. Anchors are learned
    in logit space (reference = sigmoid(anchor_box_embed)), all four coordinates.

    Args (beyond :class:`DETRBase`):
        dn_number: 0 (default) is DAB-DETR. Above 0, DN-DAB-DETR: in training, about this many
            positive (and as many negative) denoising queries per image, content from a label
            embedding ``label_enc``, as DINO's (:class:`~.denoising.DenoisingTraining`).
        label_noise_ratio, box_noise_scale: the denoising noise, as DINO's.
    """

    def __init__(self, *args, dn_number: int = 0, label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0, **kwargs):
        kwargs.setdefault("pos_offset", 0.0)
        kwargs.setdefault("pos_temperature", 20.0)
        kwargs.setdefault("share_heads", True)
        kwargs.setdefault("num_levels", 1)
        # DAB-DETR's code predicts each layer's boxes from the previous layer's undetached box
        # (look_forward_twice=True). Kept off: on tests/test_learning.py it reached mAP hard 3.75
        # against 5.83 (the ceiling) with detached anchors after the same 300 steps.
        kwargs.setdefault("look_forward_twice", False)
        super().__init__(*args, box_refine=True, anchor_query_pos=True, **kwargs)
        if self.num_levels != 1:
            raise ValueError(f"DAB-DETR is single-scale: the neck must give 1 level, got num_levels={self.num_levels}")
        self.anchor_box_embed = nn.Embedding(self.num_queries, 4)
        self.init_denoising(dn_number, label_noise_ratio, box_noise_scale, enabled=dn_number > 0)
        self.xavier_init_transformer()

    def build_query_groups(self, enc: EncoderOutput, targets: Optional[List[Dict]]):
        """Group 0: (B, num_queries) zero content on the learned anchors (B, Q, 4). With
        denoising, in training, the denoising groups follow (``extras["dn"]``)."""
        B = enc.memory.shape[0]
        anchors = self.anchor_box_embed.weight.sigmoid()[None].expand(B, -1, -1)
        content = enc.memory.new_zeros(B, self.num_queries, self.embed_dim)
        groups, extras = [QueryGroup(content, anchors, None)], {}
        self.add_dn_groups(groups, extras, targets)
        return groups, extras
