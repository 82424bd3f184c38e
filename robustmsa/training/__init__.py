"""Training: one checkpoint per (model, regime, seed), selected on the validation split only."""
from .trainer import TrainResult, resolve_device, train_model, validation_grid

__all__ = ["TrainResult", "train_model", "resolve_device", "validation_grid"]
