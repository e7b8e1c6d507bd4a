"""The training loop shared by every model: trainer, checkpoints, seeding, logging, validation.

A run from a configuration (``train(cfg)``, ``recsys-train``) is ``recsys.recommenders.train``:
it builds a registered model's recommender, which trains with this package's ``Trainer``.
"""

from recsys.training.trainer import FitResult, Trainer, TrainerConfig

__all__ = ["FitResult", "Trainer", "TrainerConfig"]
