"""Shared test helpers (importable from test modules: pytest puts tests/ on sys.path)."""

import torch

from torch import nn

from clock_distill.modeling import (
    DABDETR,
    DINO,
    ChannelMapper,
    DABEncoder,
    DeformableDETR,
    DeformableEncoder,
    HungarianMatcher,
    SetCriterion,
    build_resnet,
    dab_decoder_layers,
    deformable_decoder_layers,
    resnet_channels,
)


def tiny_deformable_detr(
    embed_dim=32, num_levels=3, num_queries=10, num_classes=3, enc_layers=1, dec_layers=2, d_ffn=64, n_points=2,
    **kwargs,
) -> DeformableDETR:
    """A CPU-sized Deformable DETR: R18-GN from scratch, 4 heads; ``kwargs`` go to DeformableDETR."""
    D, L = embed_dim, num_levels
    return DeformableDETR(
        backbone=build_resnet(18, out_features=("res3", "res4", "res5"), freeze_at=0, norm="GN"),
        neck=ChannelMapper(("res3", "res4", "res5"), resnet_channels(18), D, num_outs=L, num_groups=8),
        encoder=DeformableEncoder(num_layers=enc_layers, d_model=D, d_ffn=d_ffn, n_heads=4, n_levels=L, n_points=n_points),
        decoder_layers=deformable_decoder_layers(dec_layers, D, d_ffn, 0.0, 4, L, n_points),
        criterion=_criterion(num_classes),
        num_classes=num_classes, embed_dim=D, num_queries=num_queries, **kwargs,
    )


def _criterion(num_classes, class_weight=2.0, **kwargs):
    weights = {"loss_class": class_weight, "loss_bbox": 5.0, "loss_giou": 2.0}
    return SetCriterion(num_classes, HungarianMatcher(2.0, 5.0, 2.0), weights, **kwargs)


def tiny_dab_detr(embed_dim=32, num_queries=10, num_classes=3, enc_layers=1, dec_layers=2, d_ffn=64, **kwargs) -> DABDETR:
    """A CPU-sized DAB-DETR: R18-GN from scratch, C5 only, 4 heads; ``kwargs`` go to DABDETR."""
    D = embed_dim
    return DABDETR(
        backbone=build_resnet(18, out_features=("res5",), freeze_at=0, norm="GN"),
        neck=ChannelMapper(("res5",), (512,), D, num_outs=1, num_groups=8),
        encoder=DABEncoder(num_layers=enc_layers, d_model=D, d_ffn=d_ffn, n_heads=4),
        decoder_layers=dab_decoder_layers(dec_layers, D, d_ffn, 0.0, 4),
        decoder_norm=nn.LayerNorm(D),
        criterion=_criterion(num_classes),
        num_classes=num_classes, embed_dim=D, num_queries=num_queries, **kwargs,
    )


def tiny_dino(
    embed_dim=32, num_levels=3, num_queries=10, num_classes=3, enc_layers=1, dec_layers=2, d_ffn=64, n_points=2,
    dn_number=6, criterion=None, **kwargs,
) -> DINO:
    """A CPU-sized DINO: R18-GN from scratch, 3 levels, 4 heads; ``kwargs`` go to DINO."""
    D, L = embed_dim, num_levels
    return DINO(
        backbone=build_resnet(18, out_features=("res3", "res4", "res5"), freeze_at=0, norm="GN"),
        neck=ChannelMapper(("res3", "res4", "res5"), resnet_channels(18), D, num_outs=L, num_groups=8),
        encoder=DeformableEncoder(num_layers=enc_layers, d_model=D, d_ffn=d_ffn, n_heads=4, n_levels=L, n_points=n_points),
        decoder_layers=deformable_decoder_layers(dec_layers, D, d_ffn, 0.0, 4, L, n_points),
        decoder_norm=nn.LayerNorm(D),
        criterion=criterion or _criterion(num_classes, class_weight=1.0, enc_binary_labels=False),
        num_classes=num_classes, embed_dim=D, num_queries=num_queries, dn_number=dn_number, **kwargs,
    )


def one_thread_fixture():
    """Tiny tensors: intra-op threads only contend (10-50x slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
