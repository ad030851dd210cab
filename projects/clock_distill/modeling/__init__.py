"""DETR models: the shared core (detr.py) and one module per family."""

from .backbone import ChannelMapper, build_resnet, resnet_channels
from .criterion import SetCriterion
from .deformable_detr import DeformableDETR
from .detr import DecoderOutput, DETRBase, EncoderOutput, QueryGroup
from .matcher import HungarianMatcher
from .transformer import DeformableDecoderLayer, DeformableEncoder, deformable_decoder_layers

__all__ = [
    "ChannelMapper", "build_resnet", "resnet_channels", "SetCriterion", "DeformableDETR", "DecoderOutput",
    "DETRBase", "EncoderOutput", "QueryGroup", "HungarianMatcher", "DeformableDecoderLayer",
    "DeformableEncoder", "deformable_decoder_layers",
]
