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
