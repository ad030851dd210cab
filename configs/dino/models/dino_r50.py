from detectron2.config import LazyCall as L
from torch import nn

from clock_distill.modeling import (
    DINO,
    ChannelMapper,
    DeformableEncoder,
    HungarianMatcher,
    SetCriterion,
    build_resnet,
    deformable_decoder_layers,
)

# DINO, R50, 4 scales (C3-C5 + one extra level), 6+6 layers, 900 queries, contrastive denoising
# with 100 positive (and 100 negative) DN queries per image (detrex's DINO-4scale).
# 5 scales: dino_r50_5scale.py.
model = L(DINO)(
    backbone=L(build_resnet)(depth=50, out_features=("res3", "res4", "res5"), freeze_at=1, norm="FrozenBN"),
    neck=L(ChannelMapper)(
        in_features=("res3", "res4", "res5"), in_channels=(512, 1024, 2048), out_channels="${..embed_dim}", num_outs=4
    ),
    encoder=L(DeformableEncoder)(num_layers=6, d_model="${..embed_dim}", d_ffn=2048, dropout=0.0, n_heads=8, n_levels=4, n_points=4),
    decoder_layers=L(deformable_decoder_layers)(
        num_layers=6, d_model="${..embed_dim}", d_ffn=2048, dropout=0.0, n_heads=8, n_levels=4, n_points=4
    ),
    decoder_norm=L(nn.LayerNorm)(normalized_shape="${..embed_dim}"),
    criterion=L(SetCriterion)(
        num_classes="${..num_classes}",
        matcher=L(HungarianMatcher)(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        weight_dict={"loss_class": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0},
        enc_binary_labels=False,  # DINO's encoder proposals learn the real classes
    ),
    num_classes=80,
    embed_dim=256,
    num_queries=900,
    dn_number=100,
    label_noise_ratio=0.5,
    box_noise_scale=1.0,
    aux_loss=True,
    select_box_nums_for_evaluation=300,
)
