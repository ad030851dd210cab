from detectron2.config import LazyCall as L
from torch import nn

from clock_distill.modeling import (
    DABDETR,
    ChannelMapper,
    DABEncoder,
    HungarianMatcher,
    SetCriterion,
    build_resnet,
    dab_decoder_layers,
)

# DAB-DETR, R50, single scale (C5, stride 32), 6+6 layers, 300 anchor queries (detrex's setting).
# The 1x1 input projection of C5 carries a GroupNorm here (ChannelMapper), as the multi-scale
# families' projections do.
model = L(DABDETR)(
    backbone=L(build_resnet)(depth=50, out_features=("res5",), freeze_at=1, norm="FrozenBN"),
    neck=L(ChannelMapper)(in_features=("res5",), in_channels=(2048,), out_channels="${..embed_dim}", num_outs=1),
    encoder=L(DABEncoder)(num_layers=6, d_model="${..embed_dim}", d_ffn=2048, dropout=0.0, n_heads=8),
    decoder_layers=L(dab_decoder_layers)(num_layers=6, d_model="${..embed_dim}", d_ffn=2048, dropout=0.0, n_heads=8),
    decoder_norm=L(nn.LayerNorm)(normalized_shape="${..embed_dim}"),
    criterion=L(SetCriterion)(
        num_classes="${..num_classes}",
        matcher=L(HungarianMatcher)(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        weight_dict={"loss_class": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0},
    ),
    num_classes=80,
    embed_dim=256,
    num_queries=300,
    aux_loss=True,
    select_box_nums_for_evaluation=300,
)
