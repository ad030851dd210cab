"""detr_param_groups: the DETR lr recipe reaches the right parameters, also inside a Distiller."""

import torch
from torch import nn

from clock_distill.modeling.layers import MultiScaleDeformableAttention
from clock_distill.solver import detr_param_groups


class Family(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.attn = MultiScaleDeformableAttention(8, 2, 1, 1)
        self.reference_points = nn.Linear(8, 2)
        self.head = nn.Linear(8, 3)


class Wrapper(nn.Module):  # a Distiller's layout: the student is a submodule
    def __init__(self):
        super().__init__()
        self.student = Family()
        self.adapter = nn.Linear(8, 16)


def _lr_of(model, groups):
    lr = {}
    for g in groups:
        for p in g["params"]:
            lr[id(p)] = (g["lr"], g["weight_decay"])
    return {name: lr[id(p)] for name, p in model.named_parameters()}


def test_backbone_and_linear_proj_factors_at_any_depth():
    for model, pre in ((Family(), ""), (Wrapper(), "student.")):
        lrs = _lr_of(model, detr_param_groups(model, 1.0, weight_decay=1e-4, backbone_lr_factor=0.1, linear_proj_lr_factor=0.5))
        assert lrs[f"{pre}backbone.0.weight"] == (0.1, 1e-4)
        assert lrs[f"{pre}backbone.1.weight"] == (0.1, 0.0)  # a norm layer: no weight decay
        assert lrs[f"{pre}attn.sampling_offsets.weight"] == (0.5, 1e-4)
        assert lrs[f"{pre}reference_points.bias"] == (0.5, 1e-4)
        assert lrs[f"{pre}attn.attention_weights.weight"] == (1.0, 1e-4)
        assert lrs[f"{pre}head.weight"] == (1.0, 1e-4)
        if pre:
            assert lrs["adapter.weight"] == (1.0, 1e-4)
        assert sum(len(g["params"]) for g in detr_param_groups(model, 1.0)) == len(list(model.parameters()))
