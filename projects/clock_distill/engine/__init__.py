from .checkpoint import AtomicCheckpointer, atomic_open
from .launch import launch_cpu
from .trainer import DETRTrainer

__all__ = ["AtomicCheckpointer", "DETRTrainer", "atomic_open", "launch_cpu"]
