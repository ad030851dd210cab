"""DETR models: the shared core (detr.py) and one module per family."""

from .backbone import ChannelMapper, build_resnet, resnet_channels
from .criterion import SetCriterion
from .dab_detr import DABDETR, DABEncoder, dab_decoder_layers
from .deformable_detr import DeformableDETR
from .denoising import build_cdn_queries, dn_attention_mask
from .detr import DecoderOutput, DETRBase, EncoderOutput, QueryGroup
from .dino import DINO
from .matcher import HungarianMatcher
from .transformer import DeformableDecoderLayer, DeformableEncoder, EncoderProposals, deformable_decoder_layers

__all__ = [
    "ChannelMapper", "build_resnet", "resnet_channels", "SetCriterion", "DABDETR", "DABEncoder",
    "dab_decoder_layers", "DeformableDETR", "build_cdn_queries", "dn_attention_mask", "DecoderOutput",
    "DETRBase", "EncoderOutput", "QueryGroup", "DINO", "HungarianMatcher", "DeformableDecoderLayer",
    "DeformableEncoder", "EncoderProposals", "deformable_decoder_layers",
]
