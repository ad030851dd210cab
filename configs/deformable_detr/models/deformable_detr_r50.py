from detectron2.config import LazyCall as L

from clock_distill.modeling import (
    ChannelMapper,
    DeformableDETR,
    DeformableEncoder,
    HungarianMatcher,
    SetCriterion,
    build_resnet,
    deformable_decoder_layers,
)

# Deformable DETR, R50, 4 levels, 6+6 layers, 300 queries (the paper's setting).
# Variants: model.with_box_refine=True, model.as_two_stage=True (two-stage implies box refine
# in the paper's "++" model; set both).
model = L(DeformableDETR)(
    backbone=L(build_resnet)(depth=50, out_features=("res3", "res4", "res5"), freeze_at=1, norm="FrozenBN"),
    neck=L(ChannelMapper)(
        in_features=("res3", "res4", "res5"), in_channels=(512, 1024, 2048), out_channels="${..embed_dim}", num_outs=4
    ),
    encoder=L(DeformableEncoder)(num_layers=6, d_model="${..embed_dim}", d_ffn=1024, dropout=0.0, n_heads=8, n_levels=4, n_points=4),
    decoder_layers=L(deformable_decoder_layers)(
        num_layers=6, d_model="${..embed_dim}", d_ffn=1024, dropout=0.0, n_heads=8, n_levels=4, n_points=4
    ),
    criterion=L(SetCriterion)(
        num_classes="${..num_classes}",
        matcher=L(HungarianMatcher)(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        weight_dict={"loss_class": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0},
    ),
    num_classes=80,
    embed_dim=256,
    num_queries=300,
    with_box_refine=False,
    as_two_stage=False,
    aux_loss=True,
    select_box_nums_for_evaluation=100,
)
