"""recsys-serve hands the interpreter lock to the event loop often enough to shed load fast."""

from __future__ import annotations

import sys

import pytest
from hydra import compose, initialize_config_module

from recsys.cli.serve import build_app


def _cfg(tiny_world_dir, *overrides):
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        return compose(config_name="serve", overrides=[f"world.path={tiny_world_dir}", *overrides])


def test_serve_sets_the_switch_interval_and_refuses_a_non_positive_one(tiny_world_dir):
    before = sys.getswitchinterval()
    try:
        build_app(_cfg(tiny_world_dir, "switch_interval_ms=2"))
        assert sys.getswitchinterval() == pytest.approx(0.002)
        with pytest.raises(ValueError, match="switch_interval_ms must be > 0"):
            build_app(_cfg(tiny_world_dir, "switch_interval_ms=0"))
    finally:
        sys.setswitchinterval(before)
