"""Low-level building blocks shared by every DETR family in this package."""

from .box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    elementwise_box_iou,
    elementwise_generalized_box_iou,
    generalized_box_iou,
    inverse_sigmoid,
)
from .mlp import MLP
from .ms_deform_attn import MultiScaleDeformableAttention, multi_scale_deformable_attention
from .position_encoding import PositionEmbeddingSine, get_sine_pos_embed

__all__ = [
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xyxy_to_cxcywh",
    "elementwise_box_iou",
    "elementwise_generalized_box_iou",
    "generalized_box_iou",
    "inverse_sigmoid",
    "MLP",
    "MultiScaleDeformableAttention",
    "multi_scale_deformable_attention",
    "PositionEmbeddingSine",
    "get_sine_pos_embed",
]
