"""The neck-feature KD baseline: FGD-style foreground/background masked MSE (Yang et al., CVPR
2022, its focal term) on the multi-scale features that enter the encoder, instead of the
encoder's memory. It is "what most KD methods do"; LCMD differs only in distilling the memory,
which already holds the encoder's global context.
"""

from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from .memory_loss import MemoryDistillLoss

__all__ = ["FeatureDistillLoss", "flatten_levels"]


def flatten_levels(features: List[Tensor]) -> Tensor:
    """L maps (B, D, H_l, W_l) -> (B, sum_l H_l*W_l, D), levels finest first: the memory's layout."""
    return torch.cat([f.flatten(2).transpose(1, 2) for f in features], 1)


class FeatureDistillLoss(MemoryDistillLoss):
    """The same masks, coefficients and normalization as LCMD (:class:`MemoryDistillLoss`),
    applied by the distiller to the neck features (``EncoderOutput.features``, flattened with
    :func:`flatten_levels`). FGD's attention and global-relation terms are not included."""
