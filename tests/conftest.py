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
    from recsys.data.datasets import ensure_world

    return ensure_world("tiny", 0, tmp_path_factory.mktemp("worlds"))


@pytest.fixture(scope="module")
def tiny_world(tiny_world_dir):
    from recsys.data.tables import load_tables

    return load_tables(tiny_world_dir)
