"""Trainable models behind the ``Recommender`` interface, by name, and a training run.

``registry`` names every trainable model (``MODELS``, ``register``); ``build`` turns a name and
its settings into a recommender; ``sequential`` and ``two_tower`` adapt the two model families;
``experiment.train(cfg)`` (``recsys-train``) runs one training from a composed configuration;
``restore`` brings a trained model back from its checkpoint; ``candidates`` lists what the
quality benchmark tunes.
"""

from recsys.recommenders.build import build_recommender, make_trained
from recsys.recommenders.data import DataConfig, SequentialData, load_sequential_data
from recsys.recommenders.experiment import final_metrics, train
from recsys.recommenders.registry import MODELS, ModelSpec, model_spec, register, unregister
from recsys.recommenders.restore import Restored, restore

__all__ = [
    "MODELS",
    "DataConfig",
    "ModelSpec",
    "Restored",
    "SequentialData",
    "build_recommender",
    "final_metrics",
    "load_sequential_data",
    "make_trained",
    "model_spec",
    "register",
    "restore",
    "train",
    "unregister",
]
