"""Backbones and necks: detectron2's ResNet and a channel-mapper neck."""

from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn

__all__ = ["build_resnet", "resnet_channels", "ChannelMapper"]


def build_resnet(
    depth: int = 50,
    out_features: Sequence[str] = ("res3", "res4", "res5"),
    freeze_at: int = 1,
    norm: str = "FrozenBN",
    width: float = 1.0,
):
    """detectron2's ResNet at depth 18, 34, 50 or 101, for LazyCall.

    ``freeze_at`` follows detectron2: 0 trains everything, 1 freezes the stem, k freezes the
    stem and the first k-1 stages. ``norm="FrozenBN"`` keeps batch statistics frozen, as all
    DETRs do with small per-GPU batches. ``width`` scales every stage's channels (and the
    stem's): 0.5 gives a ResNet of a quarter of the compute, for small students trained from
    scratch; ImageNet weights exist only for width 1.
    """
    from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet

    if depth not in (18, 34, 50, 101):
        raise ValueError(f"ResNet depth must be 18, 34, 50 or 101, got {depth}")
    stage_kwargs = {"norm": norm}
    if depth >= 50:
        # torchvision-style bottleneck (stride in the 3x3), matching torchvision-converted weights.
        stage_kwargs["stride_in_1x1"] = False
    if width == 1.0:
        stages = ResNet.make_default_stages(depth, **stage_kwargs)
    else:
        outs = resnet_channels(depth, ("res2", "res3", "res4", "res5"), width)
        ins = [_scaled(64, width)] + outs[:-1]
        blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth]
        stages = []
        for n, stride, i, o in zip(blocks, [1, 2, 2, 2], ins, outs):
            extra = {"bottleneck_channels": o // 4} if depth >= 50 else {}
            stages.append(ResNet.make_stage(
                block_class=BottleneckBlock if depth >= 50 else BasicBlock, num_blocks=n,
                stride_per_block=[stride] + [1] * (n - 1), in_channels=i, out_channels=o, **stage_kwargs, **extra,
            ))
    return ResNet(
        stem=BasicStem(in_channels=3, out_channels=_scaled(64, width), norm=norm),
        stages=stages,
        out_features=list(out_features),
        freeze_at=freeze_at,
    )


RESNET_CHANNELS = {18: (64, 128, 256, 512), 34: (64, 128, 256, 512), 50: (256, 512, 1024, 2048), 101: (256, 512, 1024, 2048)}


def _scaled(channels: int, width: float) -> int:
    c = int(round(channels * width))
    if c % 32:
        # GroupNorm ("GN") in detectron2 uses 32 groups.
        raise ValueError(f"ResNet width {width} gives {c} channels from {channels}; use a width giving multiples of 32")
    return c


def resnet_channels(depth: int, features: Sequence[str] = ("res3", "res4", "res5"), width: float = 1.0) -> list[int]:
    """Output channels of detectron2's ResNet stages ``res2..res5`` at ``depth`` and ``width``."""
    return [_scaled(RESNET_CHANNELS[depth]["res2 res3 res4 res5".split().index(f)], width) for f in features]


class ChannelMapper(nn.Module):
    """Map backbone features to ``num_outs`` levels of ``out_channels`` each.

    Each input level gets a 1x1 conv + GroupNorm; levels beyond the inputs are made by a 3x3
    stride-2 conv + GroupNorm, the first from the last input feature and the next ones from
    the previous extra level (Deformable DETR's 4th level from C5).

    Args:
        in_features: the backbone outputs to use, finest first.
        in_channels: their channels (``resnet_channels(depth)``).
        out_channels: D.
        num_outs: number of output levels L, >= len(in_features).
        num_groups: GroupNorm groups.
    """

    def __init__(
        self,
        in_features: Sequence[str] = ("res3", "res4", "res5"),
        in_channels: Sequence[int] = (512, 1024, 2048),
        out_channels: int = 256,
        num_outs: int = 4,
        num_groups: int = 32,
    ):
        super().__init__()
        if len(in_features) != len(in_channels):
            raise ValueError(f"in_features {list(in_features)} and in_channels {list(in_channels)} differ in length")
        if num_outs < len(in_features):
            raise ValueError(f"num_outs={num_outs} < len(in_features)={len(in_features)}")
        self.in_features = list(in_features)
        self.num_outs = num_outs
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, out_channels, 1), nn.GroupNorm(num_groups, out_channels)) for c in in_channels
        )
        num_extra = num_outs - len(in_features)
        extra_in = ([in_channels[-1]] + [out_channels] * (num_extra - 1))[:num_extra]
        self.extra_convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, out_channels, 3, stride=2, padding=1), nn.GroupNorm(num_groups, out_channels))
            for c in extra_in
        )
        self.out_channels = out_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, features: Dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """features: name -> (B, C_in, H, W). Returns ``num_outs`` tensors (B, D, H_l, W_l)."""
        missing = [f for f in self.in_features if f not in features]
        if missing:
            raise KeyError(f"ChannelMapper needs backbone features {missing}; got {list(features)}")
        outs = [conv(features[f]) for conv, f in zip(self.convs, self.in_features)]
        x = features[self.in_features[-1]]
        for conv in self.extra_convs:
            x = conv(x)
            outs.append(x)
        return outs
