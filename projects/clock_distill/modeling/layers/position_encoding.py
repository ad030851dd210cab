"""Sine position embeddings: 2-d feature-map embeddings (DETR / Deformable DETR)
and per-coordinate embeddings of anchor boxes (DAB-DETR / DINO)."""

import math

import torch
from torch import Tensor, nn

__all__ = ["PositionEmbeddingSine", "get_sine_pos_embed"]


def _frequencies(num_pos_feats: int, temperature: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(num_pos_feats,) divisors temperature ** (2 * floor(i / 2) / num_pos_feats):
    channels 2k and 2k+1 share one frequency, one taking sin and the other cos."""
    dim_t = torch.arange(num_pos_feats, dtype=dtype, device=device)
    return temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)


def _interleave_sin_cos(x: Tensor) -> Tensor:
    """(..., F) phases -> (..., F) with sin on even and cos on odd channels."""
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), dim=-1).flatten(-2)


class PositionEmbeddingSine(nn.Module):
    """Fixed 2-d sine embedding of a padded feature map.

    Positions are the running count of valid (non-padding) cells along each
    axis, so every image in a padded batch gets coordinates of its own extent.
    With ``normalize``, ``(count + offset) / (last count + 1e-6) * scale``:
    ``offset=0`` is DETR / DAB-DETR, ``offset=-0.5`` is Deformable DETR / DINO
    (cell centres).

    Args:
        num_pos_feats: channels per axis (even); the output has twice as many.
        temperature: base of the frequency ladder.
        normalize: divide by the valid extent of each image.
        scale: range of the normalized positions (2*pi by default).
        offset: added to the counts before normalizing.
    """

    def __init__(
        self,
        num_pos_feats: int = 128,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float = 2 * math.pi,
        offset: float = 0.0,
    ):
        super().__init__()
        if num_pos_feats % 2 != 0:
            raise ValueError(f"num_pos_feats must be even (sin/cos pairs), got {num_pos_feats}")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.offset = offset
        self.eps = 1e-6

    def forward(self, mask: Tensor) -> Tensor:
        """
        Args:
            mask: (B, H, W) bool, True on padding.

        Returns:
            (B, 2 * num_pos_feats, H, W) float32 on ``mask.device``; channels
            [0, num_pos_feats) embed y, the rest embed x.
        """
        if mask.dim() != 3 or mask.dtype != torch.bool:
            raise ValueError(f"mask must be (B, H, W) bool, got shape {tuple(mask.shape)} dtype {mask.dtype}")
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + self.eps) * self.scale
        dim_t = _frequencies(self.num_pos_feats, self.temperature, torch.float32, mask.device)
        pos_x = _interleave_sin_cos(x_embed[..., None] / dim_t)
        pos_y = _interleave_sin_cos(y_embed[..., None] / dim_t)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (
            f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
            f"normalize={self.normalize}, scale={self.scale}, offset={self.offset}"
        )


def get_sine_pos_embed(
    pos: Tensor,
    num_pos_feats: int = 128,
    temperature: float = 10000,
    exchange_xy: bool = True,
) -> Tensor:
    """Embed each coordinate of normalized points or boxes with sines.

    Each coordinate c in [0, 1] becomes ``num_pos_feats`` channels
    ``sin/cos(2*pi*c / temperature ** (2*floor(i/2)/num_pos_feats))`` with sin on
    even and cos on odd channels; the per-coordinate blocks are concatenated
    in input order, except that with ``exchange_xy`` the first two blocks are
    swapped, giving (y, x, w, h) as DAB-DETR / DINO do for their anchors.

    Args:
        pos: (..., n) coordinates in [0, 1], e.g. n=2 (x, y) or n=4 (cx, cy, w, h).
        num_pos_feats: channels per coordinate (even).
        temperature: base of the frequency ladder.
        exchange_xy: swap the first two coordinate blocks (needs n >= 2).

    Returns:
        (..., n * num_pos_feats), in ``pos``'s dtype promoted to at least float32.
    """
    if num_pos_feats % 2 != 0:
        raise ValueError(f"num_pos_feats must be even (sin/cos pairs), got {num_pos_feats}")
    if exchange_xy and pos.shape[-1] < 2:
        raise ValueError(f"exchange_xy needs at least 2 coordinates, got pos of shape {tuple(pos.shape)}")
    # Frequencies up to 1/temperature lose most of their precision in half types.
    dtype = torch.promote_types(pos.dtype, torch.float32)
    dim_t = _frequencies(num_pos_feats, temperature, dtype, pos.device)
    phases = pos.to(dtype)[..., None] * (2 * math.pi) / dim_t  # (..., n, F)
    embed = _interleave_sin_cos(phases)  # (..., n, F)
    if exchange_xy:
        order = [1, 0] + list(range(2, pos.shape[-1]))
        embed = embed[..., order, :]
    return embed.flatten(-2)
