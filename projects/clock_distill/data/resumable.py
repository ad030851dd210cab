"""A training data loader that resumes exactly: same data order and same augmentations after
``--resume`` as in an uninterrupted run.

detectron2's ``TrainingSampler`` restarts its stream from the beginning on every launch, and the
random augmentations depend on the data-loader workers' random state, which a restart resets.
Here every item of the infinite shuffled stream has a global *position*; the sampler can start
at any position (the iterations already done x the total batch size), and each item is mapped
with the random generators (python, numpy, torch) seeded from (stream seed, position), so that
an item gets the same augmentation whichever process, worker or launch maps it.

:class:`ResumeStateHook` (registered by ``tools/lazyconfig_train_net.py``) stores the stream
seed and the main process's random states in the checkpoint and, on resume, restarts the
stream at the right position and restores those states.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from typing import Optional

import numpy as np
import torch
from detectron2.engine import HookBase
from detectron2.utils import comm
from torch.utils.data import Dataset, Sampler

__all__ = ["ResumableTrainingSampler", "SeededMapDataset", "build_resumable_train_loader", "ResumeStateHook",
           "preserved_rng"]


class ResumableTrainingSampler(Sampler):
    """An infinite stream of ``(position, index)``: epochs of ``torch.randperm(size)`` from a
    generator seeded with ``seed`` (detectron2's ``TrainingSampler`` order for the same seed),
    each index tagged with its global position. Rank r of W gets positions
    ``start + r, start + r + W, ...``.

    Args:
        size: number of dataset items.
        shuffle: permute each epoch (else 0..size-1 repeated).
        seed: the stream seed; None draws one shared by all ranks (``comm.shared_random_seed``).
    """

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None):
        if size <= 0:
            raise ValueError(f"the training dataset is empty (size {size})")
        self.size, self.shuffle = size, shuffle
        self.seed = int(comm.shared_random_seed() if seed is None else seed)
        self.start = 0  # global position of the first item, set on resume
        self.rank, self.world = comm.get_rank(), comm.get_world_size()

    def _stream(self):
        g = torch.Generator()
        g.manual_seed(self.seed)
        position = 0
        while True:
            order = torch.randperm(self.size, generator=g).tolist() if self.shuffle else range(self.size)
            for index in order:
                yield position, index
                position += 1

    def __iter__(self):
        yield from itertools.islice(self._stream(), self.start + self.rank, None, self.world)


@contextlib.contextmanager
def preserved_rng(gpu: bool = True):
    """Run a block without changing the python, numpy and torch random states seen after it
    (e.g. an evaluation in the middle of training). ``gpu=False`` leaves the GPU generators out:
    the data mapping draws on none, and a data-loader worker must not touch CUDA."""
    py, npy = random.getstate(), np.random.get_state()
    gpus = range(torch.cuda.device_count()) if gpu and torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=gpus):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


class SeededMapDataset(Dataset):
    """``mapper(dataset[index])`` for ``(position, index)`` items, with the random generators
    seeded from the sampler's seed and the position (restored afterwards)."""

    def __init__(self, dataset, mapper, sampler: ResumableTrainingSampler):
        self.dataset, self.mapper, self.sampler = dataset, mapper, sampler

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        position, index = item
        seed = (self.sampler.seed * 1_000_003 + position) % 2**32
        # Per item, in the data workers: CPU generators only (torch.manual_seed would also
        # queue a seed for every GPU).
        with preserved_rng(gpu=False):
            random.seed(seed)
            np.random.seed(seed)
            torch.random.default_generator.manual_seed(seed)
            return self.mapper(self.dataset[index])


def build_resumable_train_loader(dataset, mapper, total_batch_size: int, *, num_workers: int = 0,
                                 aspect_ratio_grouping: bool = True, shuffle: bool = True, seed: Optional[int] = None):
    """Drop-in for detectron2's ``build_detection_train_loader`` (same batches of mapped dicts,
    per-rank batch = total / world size, the same grouping by aspect ratio) that resumes
    exactly; the loader's ``resumable_sampler`` is what :class:`ResumeStateHook` drives.

    Its ``DataLoader`` draws its worker seeds from its own generator, never from the global
    torch generator: detectron2's loader takes one draw from it when its iterator starts (at
    the first step), which a resumed run would take at another step.
    """
    import operator

    from detectron2.data.build import trivial_batch_collator, worker_init_reset_seed
    from detectron2.data.common import AspectRatioGroupedDataset, ToIterableDataset
    from torch.utils.data import DataLoader

    if mapper is None:
        raise ValueError("build_resumable_train_loader needs a mapper")
    world = comm.get_world_size()
    if total_batch_size <= 0 or total_batch_size % world != 0:
        raise ValueError(f"dataloader.train.total_batch_size={total_batch_size} must be a positive multiple of the "
                         f"number of processes ({world})")
    batch_size = total_batch_size // world
    sampler = ResumableTrainingSampler(len(dataset), shuffle=shuffle, seed=seed)
    items = ToIterableDataset(SeededMapDataset(dataset, mapper, sampler), sampler)
    generator = torch.Generator()
    generator.manual_seed(sampler.seed)
    if aspect_ratio_grouping:
        loader = DataLoader(items, num_workers=num_workers, collate_fn=operator.itemgetter(0),
                            worker_init_fn=worker_init_reset_seed, generator=generator)
        loader = AspectRatioGroupedDataset(loader, batch_size)
    else:
        loader = DataLoader(items, batch_size=batch_size, drop_last=True, num_workers=num_workers,
                            collate_fn=trivial_batch_collator, worker_init_fn=worker_init_reset_seed, generator=generator)
    loader.resumable_sampler = sampler
    return loader


class ResumeStateHook(HookBase):
    """Exact resume: the checkpoint stores the stream seed and the random states; on resume the
    stream restarts at ``start_iter x total_batch_size`` and the states come back.

    Its state is captured when the checkpointer saves (after the step), and every random draw
    between then and the next step is avoided: evaluations run under :func:`preserved_rng`.
    """

    def __init__(self, sampler: ResumableTrainingSampler, total_batch_size: int):
        self.sampler, self.total_batch_size = sampler, total_batch_size
        self._restore = None

    def state_dict(self):
        # Plain types and tensors only: torch.load's default weights_only=True refuses numpy arrays.
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        version, internal, py_gauss = random.getstate()
        state = {"sampler_seed": self.sampler.seed, "python": [version, list(internal), py_gauss],
                 "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
                 "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["gpu"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state):
        self.sampler.seed = int(state["sampler_seed"])
        self._restore = state

    def before_train(self):
        if self.trainer.start_iter > 0:
            self.sampler.start = self.trainer.start_iter * self.total_batch_size
            # detectron2 made the iterator when the trainer was built, from position 0.
            self.trainer._data_loader_iter = iter(self.trainer.data_loader)
        if self._restore is not None:
            s = self._restore
            version, internal, py_gauss = s["python"]
            random.setstate((version, tuple(internal), py_gauss))
            kind, keys, pos, has_gauss, gauss = s["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            torch.set_rng_state(s["torch"])
            if "gpu" in s and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(s["gpu"])
            self._restore = None
