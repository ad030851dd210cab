"""Optimizer parameter groups for DETRs."""

from __future__ import annotations

from torch import nn

__all__ = ["detr_param_groups"]

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.SyncBatchNorm)


def detr_param_groups(
    model: nn.Module,
    base_lr: float,
    weight_decay: float = 1e-4,
    weight_decay_norm: float = 0.0,
    backbone_lr_factor: float = 0.1,
    linear_proj_lr_factor: float = 0.1,
    backbone_name: str = "backbone",
    linear_proj_names: tuple = ("sampling_offsets", "reference_points"),
) -> list[dict]:
    """Parameter groups with the DETR recipe: lr x ``backbone_lr_factor`` for parameters of a
    module named ``backbone_name`` at any depth (``backbone.*``, and a Distiller's
    ``student.backbone.*``); lr x ``linear_proj_lr_factor`` for deformable attention's sampling
    offsets and Deformable DETR's reference-point projection (Deformable DETR's and DINO's
    ``lr_linear_proj_mult``); ``weight_decay_norm`` for normalization layers.

    (detectron2 0.6's ``get_default_optimizer_params`` has no per-module lr factor.) Shared
    parameters (tied heads) appear once.
    """
    groups: dict[tuple, list] = {}
    seen = set()
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{module_name}.{name}" if module_name else name
            path = full.split(".")[:-1]
            if backbone_name in path:
                lr = base_lr * backbone_lr_factor
            elif any(n in path for n in linear_proj_names):
                lr = base_lr * linear_proj_lr_factor
            else:
                lr = base_lr
            wd = weight_decay_norm if isinstance(module, _NORM_TYPES) else weight_decay
            groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
