"""Training: one checkpoint per (model, regime, seed), selected on the validation split only."""
from .trainer import RegimeCorruption, TrainingRun, TrainResult, resolve_device, train_model

__all__ = ["TrainResult", "TrainingRun", "RegimeCorruption", "train_model", "resolve_device"]
