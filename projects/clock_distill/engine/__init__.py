from .trainer import DETRTrainer

__all__ = ["DETRTrainer"]
