"""DistillationHook: how a :class:`~clock_distill.distill.distiller.Distiller` meets detectron2's
default trainer (``tools/lazyconfig_train_net.py`` registers it when the model is a Distiller).

- before training: the teacher must be loaded and frozen (eval mode, no gradients, not in the
  optimizer, bit-identical to its checkpoint), else the run stops at once;
- before each step: the KD weights' linear warm-up factor ``kd_scale`` = min(1, (iter + 1) / N),
  and whether the teacher computes its own detection loss on this batch;
- after each step, to EventStorage (so metrics.json, the console and TensorBoard get them):
  ``kd/scale``, ``kd/num_queries`` (distillation queries in the batch), ``kd/weight_mean`` (the
  mean TCLD weight w_q: how sure the teacher is on the targets) and, every
  ``teacher_loss_period`` steps, ``teacher/loss_{class,bbox,giou}`` (last layer) and
  ``teacher/total_loss`` (all its weighted terms): the teacher's own detection losses on the
  batch, so a bad teacher shows. The KD terms themselves are in the loss dict, which the trainer
  logs (``loss_lcmd``, ``loss_tcld_*``, ...);
- after a finished training: the teacher is checked bit-identical again, and the student alone
  is exported to ``OUTPUT/model_student_final.pth`` (main process).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from detectron2.engine import HookBase
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

from .distiller import Distiller

__all__ = ["DistillationHook", "unwrap_distiller"]

logger = logging.getLogger(__name__)

STUDENT_EXPORT = "model_student_final.pth"


def unwrap_distiller(model) -> Optional[Distiller]:
    """The Distiller inside ``model`` (DDP-wrapped or not), or None if it is another model."""
    if isinstance(model, DistributedDataParallel):
        model = model.module
    return model if isinstance(model, Distiller) else None


class DistillationHook(HookBase):
    """Args:
        output_dir: where the student is exported (``train.output_dir``).
        warmup_iters: N of the KD weights' linear warm-up; 0 for none.
        teacher_loss_period: every this many steps, log the teacher's detection losses
            (default: ``train.log_period``); 0 never.
        export: write ``model_student_final.pth`` at the end of a finished training.
    """

    def __init__(self, output_dir: str, warmup_iters: int = 0, teacher_loss_period: int = 20, export: bool = True):
        if warmup_iters < 0 or teacher_loss_period < 0:
            raise ValueError(f"warmup_iters={warmup_iters} and teacher_loss_period={teacher_loss_period} must be >= 0")
        self.output_dir = output_dir
        self.warmup_iters = warmup_iters
        self.teacher_loss_period = teacher_loss_period
        self.export = export

    @property
    def distiller(self) -> Distiller:
        d = unwrap_distiller(self.trainer.model)
        if d is None:
            raise TypeError(f"DistillationHook needs a Distiller model, got {type(self.trainer.model).__name__}")
        return d

    def before_train(self):
        self.distiller.check_teacher(self.trainer.optimizer)
        logger.info("Teacher %s loaded from %s and frozen.", type(self.distiller.teacher).__name__, self.distiller.teacher_weights)

    def before_step(self):
        d, it = self.distiller, self.trainer.iter
        d.kd_scale = min(1.0, (it + 1) / self.warmup_iters) if self.warmup_iters > 0 else 1.0
        d.compute_teacher_losses = self.teacher_loss_period > 0 and (it + 1) % self.teacher_loss_period == 0

    def after_step(self):
        d, storage = self.distiller, self.trainer.storage
        storage.put_scalar("kd/scale", d.kd_scale, smoothing_hint=False)
        for k, v in d.kd_stats.items():
            storage.put_scalar(f"kd/{k}", float(v))
        if d.teacher_losses is not None:
            values = {k: float(v) for k, v in d.teacher_losses.items()}
            # The last layer's terms and the weighted total of all (aux, encoder; the teacher runs
            # in eval mode, so DINO's denoising terms are zero and left out of the console).
            last = {k: values[k] for k in d.teacher.criterion.loss_keys if k in values}
            storage.put_scalars(**{f"teacher/{k}": v for k, v in last.items()}, smoothing_hint=False)
            storage.put_scalar("teacher/total_loss", sum(values.values()), smoothing_hint=False)
            d.teacher_losses = None

    def after_train(self):
        # detectron2 sets iter = max_iter only when every step ran; after an exception it is less.
        if self.trainer.iter < self.trainer.max_iter:
            return
        self.distiller.check_teacher()
        if self.export and comm.is_main_process():
            path = os.path.join(self.output_dir, STUDENT_EXPORT)
            self.distiller.export_student(path)
            logger.info("Exported the student alone to %s", path)
