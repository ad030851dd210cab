from .checkpoint import AtomicCheckpointer, atomic_open
from .trainer import DETRTrainer

__all__ = ["AtomicCheckpointer", "DETRTrainer", "atomic_open"]
