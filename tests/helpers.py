"""Shared test helpers (importable from test modules: pytest puts tests/ on sys.path)."""

import torch

from clock_distill.modeling import (
    ChannelMapper,
    DeformableDETR,
    DeformableEncoder,
    HungarianMatcher,
    SetCriterion,
    build_resnet,
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
        criterion=SetCriterion(
            num_classes, HungarianMatcher(2.0, 5.0, 2.0), {"loss_class": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0}
        ),
        num_classes=num_classes, embed_dim=D, num_queries=num_queries, **kwargs,
    )


def one_thread_fixture():
    """Tiny tensors: intra-op threads only contend (10-50x slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
