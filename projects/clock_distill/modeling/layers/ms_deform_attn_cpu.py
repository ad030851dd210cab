"""The fused CPU kernel of multi-scale deformable attention (``kernel="cpu"``).

``csrc/ms_deform_attn_cpu.cpp`` samples, weights and sums every (level, point) of a query in
one pass, parallel over (image, head) pairs with OpenMP, and its backward scatters into the
value without atomics. It computes what :func:`multi_scale_deformable_attention` computes with
``kernel="pytorch"`` (tests hold them together to float64 precision) at about half the time,
forward and backward, on CPU (README, "Speed and memory").

It is built on first use with torch's C++ extension loader (about 25-70 s, a C++ compiler with
OpenMP needed) into torch's extension cache (``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``), and reused from there. Nothing else needs it: ``kernel="pytorch"``
is the default and runs everywhere, the GPU included.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path
from typing import List, Tuple

import torch
from torch import Tensor

__all__ = ["load_cpu_kernel", "ms_deform_attn_cpu"]

SOURCE = Path(__file__).resolve().parent / "csrc" / "ms_deform_attn_cpu.cpp"


@functools.lru_cache(maxsize=None)
def load_cpu_kernel() -> None:
    """Build (or load from the cache) the kernel; registers ``torch.ops.clock_distill.msda_*``."""
    from torch.utils.cpp_extension import load

    # Apple's clang has no -fopenmp: the kernel then runs on one thread (torch's parallel_for
    # is header code that only forks when compiled with OpenMP).
    openmp = [] if sys.platform == "darwin" else ["-fopenmp"]
    if shutil.which("ninja") is None:
        # torch runs `ninja` from PATH; requirements.txt installs it next to this interpreter,
        # which is not on PATH when the venv is not activated (.venv/bin/python ...).
        os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    try:
        load("clock_distill_msda_cpu", [str(SOURCE)], extra_cflags=["-O3", *openmp], extra_ldflags=openmp,
             is_python_module=False)
    except Exception as e:  # a missing compiler shows up as OSError, RuntimeError or CalledProcessError
        raise RuntimeError(
            f"could not build the fused CPU deformable-attention kernel from {SOURCE} (it needs a C++ compiler "
            f"with OpenMP): {e}\nmodel.msda_kernel=pytorch runs without it."
        ) from e


class _MSDAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, shapes, starts, loc, weights):
        ctx.save_for_backward(value, shapes, starts, loc, weights)
        return torch.ops.clock_distill.msda_forward(value, shapes, starts, loc, weights)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        value, shapes, starts, loc, weights = ctx.saved_tensors
        grad_value, grad_loc, grad_weights = torch.ops.clock_distill.msda_backward(value, shapes, starts, loc, weights, grad_out)
        return grad_value, None, None, grad_loc, grad_weights


def ms_deform_attn_cpu(value: Tensor, shapes: List[Tuple[int, int]], sampling_locations: Tensor,
                       attention_weights: Tensor) -> Tensor:
    """The kernel with autograd; arguments as :func:`multi_scale_deformable_attention` (checked
    there). value (B, N, M, Dh), float32 or float64 on the CPU. Returns (B, Q, M * Dh)."""
    if value.device.type != "cpu":
        raise ValueError(f"the deformable-attention kernel 'cpu' runs on the CPU, but value is on {value.device}: "
                         "use model.msda_kernel=pytorch there")
    if value.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"the deformable-attention kernel 'cpu' takes float32 or float64, got {value.dtype}: "
                         "use model.msda_kernel=pytorch for other dtypes")
    load_cpu_kernel()
    shapes_t = torch.tensor(shapes, dtype=torch.long)
    starts = torch.cumsum(shapes_t.prod(1), 0) - shapes_t.prod(1)
    dtype = value.dtype
    out = _MSDAFunction.apply(value, shapes_t, starts, sampling_locations.to(dtype), attention_weights.to(dtype))
    return out.flatten(2)  # (B, Q, M, Dh) -> (B, Q, M * Dh), head-major as the PyTorch path
