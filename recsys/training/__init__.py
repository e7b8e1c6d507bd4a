"""The training stack shared by every model: loop, checkpoints, seeding, logging, runs.

``train(cfg)`` (``recsys.training.experiment``) is imported lazily: models import the trainer
from this package, and the experiment module imports the models.
"""

from recsys.training.trainer import FitResult, Trainer, TrainerConfig

__all__ = ["FitResult", "Trainer", "TrainerConfig", "train"]


def __getattr__(name: str):
    if name == "train":
        from recsys.training.experiment import train

        return train
    raise AttributeError(f"module 'recsys.training' has no attribute {name!r}")
