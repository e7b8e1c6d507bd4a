"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one torch thread (and far faster on busy machines)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_world_dir(tmp_path_factory):
    """A freshly simulated tiny world (seed 0), one per test module."""
    from recsys.datasets import ensure_world

    return ensure_world("tiny", 0, tmp_path_factory.mktemp("worlds"))


@pytest.fixture(scope="module")
def tiny_world(tiny_world_dir):
    from recsys.data.tables import load_tables

    return load_tables(tiny_world_dir)


def compose_config(name: str, overrides: list[str]):
    """A shipped Hydra config (``recsys/conf/<name>.yaml``) with overrides."""
    from recsys.cli.pipeline import compose_job

    return compose_job(name, overrides)


@pytest.fixture(scope="module")
def trained_two_tower(tmp_path_factory):
    """(best checkpoint, world cache folder) of a two-tower trained one epoch on the tiny world."""
    from recsys.datasets import ensure_world
    from recsys.recommenders.experiment import train
    from recsys.training.checkpoint import BEST

    cache = tmp_path_factory.mktemp("worlds")
    ensure_world("tiny", 0, cache)
    run_dir = tmp_path_factory.mktemp("run")
    overrides = [
        "model=two_tower",
        "data=synthetic-tiny",
        f"data.cache_dir={cache}",
        f"run_dir={run_dir}",
        "model.dim=16",
        "model.bag_size=20",
        "trainer.max_epochs=1",
        "trainer.batch_size=64",
        "trainer.num_threads=1",
        "trainer.progress=false",
    ]
    train(compose_config("train", overrides))
    return run_dir / BEST, cache
