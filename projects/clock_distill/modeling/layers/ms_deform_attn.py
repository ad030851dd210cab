"""Multi-scale deformable attention (Zhu et al., "Deformable DETR", ICLR 2021).

:func:`multi_scale_deformable_attention` computes it with one of two kernels:
``"pytorch"`` (the default: one ``F.grid_sample`` per level, then the weighted
sum; every device and dtype that ``grid_sample`` supports) is the reference;
``"cpu"`` is a fused C++ kernel for the CPU, built on first use
(``ms_deform_attn_cpu``), which must match it.
"""

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["multi_scale_deformable_attention", "MultiScaleDeformableAttention", "MSDA_KERNELS", "check_msda_kernel"]

MSDA_KERNELS = ("pytorch", "cpu")

SpatialShapes = Union[Tensor, Sequence[Tuple[int, int]]]


def _shapes_as_list(spatial_shapes: SpatialShapes) -> List[Tuple[int, int]]:
    """(L, 2) tensor or sequence of (H, W) -> list of python (H, W) pairs."""
    if isinstance(spatial_shapes, Tensor):
        if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
            raise ValueError(f"spatial_shapes must be (L, 2) as (H, W), got shape {tuple(spatial_shapes.shape)}")
        if spatial_shapes.is_floating_point():
            raise ValueError(f"spatial_shapes must be an integer tensor, got dtype {spatial_shapes.dtype}")
        spatial_shapes = spatial_shapes.tolist()
    shapes = [(int(h), int(w)) for h, w in spatial_shapes]
    for h, w in shapes:
        if h <= 0 or w <= 0:
            raise ValueError(f"spatial_shapes must be positive, got {shapes}")
    return shapes


def check_msda_kernel(kernel: str) -> str:
    if kernel not in MSDA_KERNELS:
        raise ValueError(f"unknown deformable-attention kernel {kernel!r}; choose one of {list(MSDA_KERNELS)}")
    return kernel


def multi_scale_deformable_attention(
    value: Tensor,
    spatial_shapes: SpatialShapes,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    kernel: str = "pytorch",
) -> Tensor:
    """Weighted sum of bilinearly sampled values over levels and points.

    Sampling follows ``F.grid_sample(mode="bilinear", padding_mode="zeros",
    align_corners=False)`` with grid ``2 * loc - 1``: location 0 is the left
    (top) edge of the first cell, 1 the right (bottom) edge of the last, the
    centre of cell i is (i + 0.5) / W, and neighbours outside the map count as
    zero (so a point outside [0, 1] fades to 0 within half a cell).

    Args:
        value: (B, N, heads, head_dim), the flattened levels concatenated in
            order, N = sum_l H_l * W_l (row-major within a level).
        spatial_shapes: (L, 2) integer tensor (or sequence) of (H_l, W_l).
        sampling_locations: (B, Q, heads, L, P, 2) normalized (x, y).
        attention_weights: (B, Q, heads, L, P); not normalized here.
        kernel: ``"pytorch"`` or ``"cpu"`` (the fused CPU kernel; CPU tensors, float32/64).

    Returns:
        (B, Q, heads * head_dim), head-major channels (head h owns channels
        [h * head_dim, (h + 1) * head_dim)).
    """
    shapes = _shapes_as_list(spatial_shapes)
    if value.dim() != 4:
        raise ValueError(f"value must be (B, N, heads, head_dim), got shape {tuple(value.shape)}")
    B, N, M, D = value.shape
    total = sum(h * w for h, w in shapes)
    if total != N:
        raise ValueError(
            f"sum(H*W) over spatial_shapes {shapes} is {total}, but value has N={N} (value shape {tuple(value.shape)})"
        )
    L = len(shapes)
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            f"sampling_locations must be (B, Q, heads, L, P, 2), got shape {tuple(sampling_locations.shape)}"
        )
    _, Q, _, _, P, _ = sampling_locations.shape
    if tuple(sampling_locations.shape[:4]) != (B, Q, M, L):
        raise ValueError(
            f"sampling_locations shape {tuple(sampling_locations.shape)} does not fit "
            f"(B={B}, Q, heads={M}, L={L}, P, 2) from value {tuple(value.shape)} and {L} spatial shapes"
        )
    if tuple(attention_weights.shape) != (B, Q, M, L, P):
        raise ValueError(
            f"attention_weights must be (B, Q, heads, L, P) = {(B, Q, M, L, P)}, got {tuple(attention_weights.shape)}"
        )
    if check_msda_kernel(kernel) == "cpu":
        from .ms_deform_attn_cpu import ms_deform_attn_cpu

        return ms_deform_attn_cpu(value, shapes, sampling_locations, attention_weights)

    value_per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        # (B, H*W, M, D) -> (B*M, D, H, W): each head samples its own slice.
        value_l = value_per_level[lvl].flatten(2).transpose(1, 2).reshape(B * M, D, h, w)
        # (B, Q, M, P, 2) -> (B*M, Q, P, 2)
        grid_l = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled.append(
            F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
        )  # (B*M, D, Q, P)
    # (B, Q, M, L, P) -> (B*M, 1, Q, L*P)
    weights = attention_weights.transpose(1, 2).reshape(B * M, 1, Q, L * P)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)  # (B*M, D, Q)
    return out.view(B, M * D, Q).transpose(1, 2).contiguous()


class MultiScaleDeformableAttention(nn.Module):
    """Deformable attention over L feature levels with P points per head and level.

    Each query predicts, from ``query + query_pos``, 2-d offsets around its
    reference and a softmax over the L*P samples of each head. With 2-d
    references (x, y) the offsets are in cells of each level (divided by
    (W_l, H_l)); with 4-d reference boxes (cx, cy, w, h) they are divided by P
    and scaled by half the box size, so the initial point ladder spans the box.

    The module returns the projected attention output with dropout applied;
    the caller adds the residual (and normalization), as Deformable DETR's
    encoder and decoder layers do.

    Args:
        embed_dim: D, channels of query and value.
        num_heads: M; ``value_proj_ratio * embed_dim`` must divide by it.
        num_levels: L.
        num_points: P.
        dropout: on the output.
        value_proj_ratio: width of the projected value relative to D (1.0 in
            Deformable DETR / DINO; smaller widths trade accuracy for speed).
        kernel: ``"pytorch"`` or ``"cpu"``, see :func:`multi_scale_deformable_attention`; an
            attribute, so a model can switch every layer (``model.msda_kernel``).
    """

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        dropout: float = 0.0,
        value_proj_ratio: float = 1.0,
        kernel: str = "pytorch",
    ):
        super().__init__()
        self.kernel = check_msda_kernel(kernel)
        value_dim = int(embed_dim * value_proj_ratio)
        if value_dim <= 0 or value_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim * value_proj_ratio = {embed_dim} * {value_proj_ratio} = {value_dim} "
                f"must be a positive multiple of num_heads={num_heads}"
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.value_dim = value_dim

        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dim, value_dim)
        self.output_proj = nn.Linear(value_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialization of the Deformable DETR paper code: at start every head
        looks in its own direction (angle 2*pi*k/M, scaled so the larger of |cos|,
        |sin| is 1) at distances 1..P, with uniform attention over the samples."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], dim=-1)  # (M, 2)
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        steps = torch.arange(1, self.num_points + 1, dtype=torch.float32)  # (P,)
        grid = directions[:, None, None, :] * steps[None, None, :, None]  # (M, 1, P, 2)
        grid = grid.expand(self.num_heads, self.num_levels, self.num_points, 2)
        self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        value: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        return_attention: bool = False,
    ):
        """
        Args:
            query: (B, Q, D).
            reference_points: (B, Q, L, 2) normalized (x, y), or (B, Q, L, 4)
                normalized (cx, cy, w, h); (0, 0) is the top-left of the padded
                map, as the encoder's valid-ratio scaling expects.
            value: (B, N, D), flattened levels, N = sum_l H_l * W_l.
            spatial_shapes: (L, 2) integer (H_l, W_l).
            level_start_index: (L,) offsets of each level in N; checked against
                ``spatial_shapes`` (the PyTorch path derives them itself).
            key_padding_mask: (B, N) bool, True on padding (those values are
                zeroed), or None.
            query_pos: (B, Q, D) added to ``query`` before predicting offsets and
                weights, or None.
            return_attention: also return where each query looked (for inspection).

        Returns:
            (B, Q, D), without the residual; with ``return_attention``, ``(out, attention)``
            where attention holds ``sampling_locations`` (B, Q, M, L, P, 2), normalized (x, y) in
            each level's padded map, and ``attention_weights`` (B, Q, M, L, P), summing to 1 over
            (L, P) for each head.
        """
        shapes = _shapes_as_list(spatial_shapes)
        L = len(shapes)
        if query.dim() != 3 or query.shape[-1] != self.embed_dim:
            raise ValueError(f"query must be (B, Q, {self.embed_dim}), got {tuple(query.shape)}")
        B, Q, _ = query.shape
        if value.dim() != 3 or value.shape[0] != B or value.shape[-1] != self.embed_dim:
            raise ValueError(f"value must be (B={B}, N, {self.embed_dim}), got {tuple(value.shape)}")
        N = value.shape[1]
        if L != self.num_levels:
            raise ValueError(f"spatial_shapes has {L} levels {shapes}, but the module has num_levels={self.num_levels}")
        total = sum(h * w for h, w in shapes)
        if total != N:
            raise ValueError(
                f"sum(H*W) over spatial_shapes {shapes} is {total}, but value has N={N} ({tuple(value.shape)})"
            )
        starts = [0]
        for h, w in shapes[:-1]:
            starts.append(starts[-1] + h * w)
        if level_start_index.shape != (L,) or level_start_index.tolist() != starts:
            raise ValueError(
                f"level_start_index {level_start_index.tolist()} does not match spatial_shapes {shapes} "
                f"(expected {starts})"
            )
        ref_shape = tuple(reference_points.shape)
        if len(ref_shape) != 4 or ref_shape[:3] != (B, Q, L) or ref_shape[-1] not in (2, 4):
            raise ValueError(
                f"reference_points must be (B={B}, Q={Q}, L={L}, 2 or 4), got {ref_shape}"
            )
        if key_padding_mask is not None and tuple(key_padding_mask.shape) != (B, N):
            raise ValueError(f"key_padding_mask must be (B={B}, N={N}), got {tuple(key_padding_mask.shape)}")
        if query_pos is not None:
            if query_pos.shape != query.shape:
                raise ValueError(
                    f"query_pos must have the query's shape {tuple(query.shape)}, got {tuple(query_pos.shape)}"
                )
            query = query + query_pos

        M, P = self.num_heads, self.num_points
        v = self.value_proj(value)
        if key_padding_mask is not None:
            v = v.masked_fill(key_padding_mask[..., None], 0.0)
        v = v.view(B, N, M, self.value_dim // M)

        offsets = self.sampling_offsets(query).view(B, Q, M, L, P, 2)
        weights = self.attention_weights(query).view(B, Q, M, L * P).softmax(-1).view(B, Q, M, L, P)

        if reference_points.shape[-1] == 2:
            # Offsets are in cells of their own level: divide by (W_l, H_l).
            normalizer = torch.tensor(
                [[w, h] for h, w in shapes], dtype=offsets.dtype, device=offsets.device
            )  # (L, 2)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        else:
            centers = reference_points[:, :, None, :, None, :2]
            sizes = reference_points[:, :, None, :, None, 2:]
            locations = centers + offsets / P * sizes * 0.5

        out = multi_scale_deformable_attention(v, shapes, locations, weights, self.kernel)
        out = self.dropout(self.output_proj(out))
        if return_attention:
            return out, {"sampling_locations": locations.detach(), "attention_weights": weights.detach()}
        return out

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, num_levels={self.num_levels}, "
            f"num_points={self.num_points}, value_dim={self.value_dim}, kernel={self.kernel}"
        )
