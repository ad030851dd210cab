"""Multi-process training on CPU with the gloo backend, for machines without GPUs.

detectron2's ``launch`` is the way to scale out on GPUs (NCCL, one process per GPU), and
``tools/lazyconfig_train_net.py --num-gpus N`` uses it unchanged. Its worker asserts CUDA, so it
cannot start CPU processes; :func:`launch_cpu` starts ``num_processes`` processes on this
machine and sets them up exactly as detectron2's worker does (global process group, the local
process group of ``detectron2.utils.comm``, a barrier), with gloo instead of NCCL and no device
selection. Everything after that (samplers, ``create_ddp_model``, ``comm.all_gather``, the
evaluators) is detectron2's own code. ``--cpu-processes N`` of the train script calls it.
"""

from __future__ import annotations

from datetime import timedelta

import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm

__all__ = ["launch_cpu"]


def launch_cpu(main_func, num_processes: int, args=(), timeout: timedelta = timedelta(minutes=30)):
    """Run ``main_func(*args)`` in ``num_processes`` gloo-connected CPU processes (1: in this
    process, without a process group, as detectron2's ``launch`` with one GPU)."""
    if num_processes < 1:
        raise ValueError(f"--cpu-processes must be >= 1, got {num_processes}")
    if num_processes == 1:
        return main_func(*args)
    url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.start_processes(_cpu_worker, nprocs=num_processes, args=(main_func, num_processes, url, args, timeout),
                       daemon=False, start_method="spawn")


def _cpu_worker(rank, main_func, world_size, url, args, timeout):
    dist.init_process_group(backend="gloo", init_method=url, world_size=world_size, rank=rank, timeout=timeout)
    if comm._LOCAL_PROCESS_GROUP is not None:
        raise RuntimeError("a local process group already exists in this process")
    comm._LOCAL_PROCESS_GROUP = dist.new_group(list(range(world_size)))
    comm.synchronize()
    main_func(*args)
