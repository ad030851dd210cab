from typing import Optional

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler


def step_schedule(max_iter: int, decay_iter: int, warmup_iter: int = 0, gamma: float = 0.1):
    """Constant lr, times ``gamma`` from ``decay_iter`` on, with an optional linear warm-up."""
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(values=[1.0, gamma], milestones=[decay_iter, max_iter]),
        warmup_length=warmup_iter / max_iter,
        warmup_method="linear",
        warmup_factor=0.001,
    )


def epochs_to_iters(epochs: float, num_images: int, batch_size: int) -> int:
    """Iterations for ``epochs`` passes over ``num_images`` at ``batch_size`` images per step."""
    return int(round(epochs * num_images / batch_size))


def epoch_schedule(
    train,
    num_images: int,
    batch_size: int,
    epochs: float,
    decay_epoch: float,
    eval_every_epochs: Optional[float] = None,
    checkpoint_every_epochs: Optional[float] = None,
):
    """A paper recipe's schedule in epochs: sets ``train.max_iter`` and, when given,
    ``train.eval_period`` and ``train.checkpointer.period`` (default: the eval period), in
    iterations of ``batch_size`` images over ``num_images``; returns the step lr multiplier
    with the x0.1 decay after ``decay_epoch``."""
    iters = lambda e: epochs_to_iters(e, num_images, batch_size)  # noqa: E731
    train.max_iter = iters(epochs)
    if eval_every_epochs is not None:
        train.eval_period = iters(eval_every_epochs)
        train.checkpointer.period = train.eval_period
    if checkpoint_every_epochs is not None:
        train.checkpointer.period = iters(checkpoint_every_epochs)
    return step_schedule(max_iter=train.max_iter, decay_iter=iters(decay_epoch))
