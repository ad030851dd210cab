"""LCMD: location- and context-aware memory distillation (and, on neck features instead of the
memory, the FGD-style feature-KD baseline: :mod:`.feature_loss`).

The student's encoder memory (B, N, D) is pulled towards the teacher's, per level, under a mask
built from the GT boxes (FGD's foreground/background decomposition, Yang et al. 2022):

    loss = alpha * sum(F * (T - S)^2) + beta * sum(Bg * (T - S)^2)

summed over channels and cells, averaged over images and levels, where (mask "box")
F = 1 / (h_k * w_k) on the cells that box k covers (the smallest box wins where boxes overlap)
and Bg = 1 / N_bg on the N_bg background cells of that image and level. Padded cells count
nowhere. See :func:`lcmd_weight_maps` for the cell rules and the other masks.

Shapes: B images, N = sum_l H_l*W_l tokens (levels flattened finest first), D channels.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["LCMD_PRESETS", "lcmd_weight_maps", "MemoryDistillLoss"]

# (alpha, beta): FGD's focal-distillation coefficients; the paper's as quoted by a third-party
# reimplementation (not checked against the paper, see METHOD.md).
LCMD_PRESETS: Dict[str, Tuple[float, float]] = {"fgd": (5e-5, 2.5e-5), "paper": (5e-5, 1e-7)}
MASKS = ("box", "gaussian", "none")


def _box_cells(boxes: Tensor, valid_h: int, valid_w: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cell index ranges [y0, y1) x [x0, x1) that boxes (n, 4) cxcywh in [0, 1] of the unpadded
    image cover on a level whose unpadded extent is valid_h x valid_w cells: every cell the box
    overlaps (floor of the low edge to ceil of the high edge), at least one cell."""
    x1 = (boxes[:, 0] - boxes[:, 2] / 2) * valid_w
    x2 = (boxes[:, 0] + boxes[:, 2] / 2) * valid_w
    y1 = (boxes[:, 1] - boxes[:, 3] / 2) * valid_h
    y2 = (boxes[:, 1] + boxes[:, 3] / 2) * valid_h
    x0 = x1.floor().clamp(0, valid_w - 1).long()
    y0 = y1.floor().clamp(0, valid_h - 1).long()
    xe = torch.maximum(x2.ceil().clamp(max=valid_w).long(), x0 + 1)
    ye = torch.maximum(y2.ceil().clamp(max=valid_h).long(), y0 + 1)
    return y0, ye, x0, xe


def lcmd_weight_maps(
    boxes: Sequence[Tensor], spatial_shapes: Tensor, valid_ratios: Tensor, mask: str = "box"
) -> Tuple[Tensor, Tensor]:
    """Foreground and background weights of every memory cell.

    Args:
        boxes: B tensors (n_i, 4) cxcywh in [0, 1] of the unpadded image.
        spatial_shapes: (L, 2) padded (H_l, W_l).
        valid_ratios: (B, L, 2) unpadded fraction (w, h) of each level.
        mask: "box": F = 1/area_k (cells) on the cells box k covers, max over boxes (the smallest
            box wins); Bg = 1/N_bg on the other valid cells.
            "gaussian": box core as above plus a Gaussian falloff out to the box scaled 2x about
            its centre (sigma = a quarter of the box side, so exp(-2) at the 2x edge), g_k in
            [0, 1] scaled by 1/area_k; F = max_k g_k / area_k and Bg = (1 - max_k g_k) / sum(1 - max_k g_k).
            "none": no boxes; every valid cell is background, Bg = 1/N_valid (plain MSE).
    Returns:
        fg, bg: (B, N) weights, 0 on padded cells.
    """
    if mask not in MASKS:
        raise ValueError(f"mask={mask!r}: expected one of {list(MASKS)}")
    fgs, bgs = [], []
    for lvl, (H, W) in enumerate(spatial_shapes.tolist()):
        fg = valid_ratios.new_zeros(len(boxes), H, W)
        bg = valid_ratios.new_zeros(len(boxes), H, W)
        for b, bx in enumerate(boxes):
            vw = max(1, int(round(float(valid_ratios[b, lvl, 0]) * W)))
            vh = max(1, int(round(float(valid_ratios[b, lvl, 1]) * H)))
            g = _cover(bx, vh, vw, mask)  # (n, vh, vw) in [0, 1]
            if g is None:
                fg_b, g_max = fg.new_zeros(vh, vw), fg.new_zeros(vh, vw)
            else:
                area = (g >= 1).flatten(1).sum(1).clamp(min=1).to(fg.dtype)
                fg_b = (g / area[:, None, None]).amax(0)
                g_max = g.amax(0)
            rest = 1 - g_max
            fg[b, :vh, :vw] = fg_b
            bg[b, :vh, :vw] = rest / rest.sum().clamp(min=1e-6)
        fgs.append(fg.flatten(1))
        bgs.append(bg.flatten(1))
    return torch.cat(fgs, 1), torch.cat(bgs, 1)


def _cover(boxes: Tensor, vh: int, vw: int, mask: str):
    """(n, vh, vw) coverage of each box: 1 on its cells, the Gaussian falloff around them for
    "gaussian", 0 elsewhere; None when there is nothing to cover."""
    if mask == "none" or boxes.shape[0] == 0:
        return None
    boxes = boxes.to(torch.float32)
    y0, ye, x0, xe = _box_cells(boxes, vh, vw)
    ys = torch.arange(vh, device=boxes.device)
    xs = torch.arange(vw, device=boxes.device)
    in_y = (ys[None] >= y0[:, None]) & (ys[None] < ye[:, None])  # (n, vh)
    in_x = (xs[None] >= x0[:, None]) & (xs[None] < xe[:, None])  # (n, vw)
    core = (in_y[:, :, None] & in_x[:, None, :]).float()
    if mask == "box":
        return core
    # Distance in cells from each cell centre to the box, 0 inside; falloff to the 2x box.
    cx, cy = boxes[:, 0] * vw, boxes[:, 1] * vh
    hw, hh = boxes[:, 2] * vw / 2, boxes[:, 3] * vh / 2
    dx = ((xs[None] + 0.5 - cx[:, None]).abs() - hw[:, None]).clamp(min=0)  # (n, vw)
    dy = ((ys[None] + 0.5 - cy[:, None]).abs() - hh[:, None]).clamp(min=0)  # (n, vh)
    sx, sy = (hw / 2).clamp(min=0.25), (hh / 2).clamp(min=0.25)  # a quarter of the side
    inside_2x = (dx <= hw[:, None])[:, None, :] & (dy <= hh[:, None])[:, :, None]
    g = torch.exp(-0.5 * ((dy / sy[:, None])[:, :, None] ** 2 + (dx / sx[:, None])[:, None, :] ** 2)) * inside_2x
    return torch.maximum(core, g.clamp(max=1 - 1e-6))  # only the core counts as the box's area


class MemoryDistillLoss(nn.Module):
    """LCMD on two token sequences of the same layout (B, N, D): the teacher's memory and the
    student's, already mapped to the teacher's width by the distiller's adapter.

    Args:
        weight: lambda of the whole term in the total loss.
        mask: "box" (default), "gaussian" or "none" (see :func:`lcmd_weight_maps`).
        preset: "fgd" (alpha 5e-5, beta 2.5e-5) or "paper" (5e-5, 1e-7); ``alpha`` and ``beta``
            override it when given.
    """

    def __init__(
        self, weight: float = 1.0, mask: str = "box", preset: str = "fgd",
        alpha: Optional[float] = None, beta: Optional[float] = None,
    ):
        super().__init__()
        if preset not in LCMD_PRESETS:
            raise ValueError(f"preset={preset!r}: expected one of {list(LCMD_PRESETS)}")
        if mask not in MASKS:
            raise ValueError(f"mask={mask!r}: expected one of {list(MASKS)}")
        a, b = LCMD_PRESETS[preset]
        self.weight, self.mask = weight, mask
        self.alpha = a if alpha is None else alpha
        self.beta = b if beta is None else beta

    def forward(self, teacher: Tensor, student: Tensor, boxes: Sequence[Tensor], spatial_shapes: Tensor, valid_ratios: Tensor) -> Tensor:
        """teacher, student: (B, N, D); boxes: B tensors (n_i, 4) cxcywh normalized; returns a scalar."""
        if teacher.shape != student.shape:
            raise ValueError(f"teacher tokens {tuple(teacher.shape)} and student tokens {tuple(student.shape)} differ")
        fg, bg = lcmd_weight_maps(boxes, spatial_shapes, valid_ratios, self.mask)
        dist = (teacher.detach() - student).pow(2).sum(-1)  # (B, N)
        # "none" weighs every valid cell as background; alpha then scales the plain MSE.
        bg_coef = self.alpha if self.mask == "none" else self.beta
        total = (self.alpha * fg * dist).sum() + (bg_coef * bg * dist).sum()
        return total * (self.weight / (teacher.shape[0] * spatial_shapes.shape[0]))

    def extra_repr(self) -> str:
        return f"weight={self.weight}, mask={self.mask}, alpha={self.alpha:g}, beta={self.beta:g}"
