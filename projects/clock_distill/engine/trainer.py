"""The training step: detectron2's SimpleTrainer plus gradient clipping and CUDA AMP."""

from __future__ import annotations

import time
from typing import Optional

import torch
from detectron2.engine import SimpleTrainer


class DETRTrainer(SimpleTrainer):
    """``SimpleTrainer`` with the two things DETR training needs and detectron2 0.6 lacks:
    gradient-norm clipping (DETRs use max_norm 0.1) and mixed precision on CUDA.

    Args:
        model, data_loader, optimizer: as for SimpleTrainer.
        clip_grad_params: ``{"max_norm": 0.1, "norm_type": 2}`` or None for no clipping.
        amp: use ``torch.autocast`` + GradScaler. Only on CUDA; asking for it on CPU is an error.
    """

    def __init__(self, model, data_loader, optimizer, clip_grad_params: Optional[dict] = None, amp: bool = False):
        super().__init__(model, data_loader, optimizer)
        self.clip_grad_params = dict(clip_grad_params) if clip_grad_params else None
        device = next(model.parameters()).device
        if amp and device.type != "cuda":
            raise ValueError(f"train.amp.enabled=True needs a CUDA model; this model is on {device}")
        self.amp = amp
        self.grad_scaler = torch.amp.GradScaler("cuda") if amp else None

    def run_step(self):
        assert self.model.training, "[DETRTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        with torch.autocast("cuda", enabled=self.amp):
            loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            losses = loss_dict
            loss_dict = {"total_loss": loss_dict}
        else:
            losses = sum(loss_dict.values())
        self._check_finite(loss_dict)

        self.optimizer.zero_grad()
        if self.grad_scaler is not None:
            self.grad_scaler.scale(losses).backward()
            self.grad_scaler.unscale_(self.optimizer)
        else:
            losses.backward()
        if self.clip_grad_params is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, **self.clip_grad_params)
        self._write_metrics(loss_dict, data_time)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()

    def _check_finite(self, loss_dict) -> None:
        """Stop before a NaN or inf loss reaches the weights, naming the terms and the iteration
        (one device sync per step; detectron2's own check comes after the backward and names
        no term)."""
        values = torch.stack([v.detach().float().sum() for v in loss_dict.values()])
        if bool(torch.isfinite(values).all()):
            return
        bad = {k: float(v) for k, v in zip(loss_dict, values.tolist()) if not torch.isfinite(torch.tensor(v))}
        raise FloatingPointError(
            f"loss became NaN or inf at iteration {self.iter}: {', '.join(f'{k}={v}' for k, v in bad.items())}. "
            "The weights were not updated at this iteration; the last checkpoint written before it is intact "
            "(resume from it with --resume, after lowering the lr or the offending loss weight)."
        )

    def state_dict(self):
        ret = super().state_dict()
        if self.grad_scaler is not None:
            ret["grad_scaler"] = self.grad_scaler.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])
