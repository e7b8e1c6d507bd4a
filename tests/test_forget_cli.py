"""Every command's output on the tiny world, forgotten by recsys-forget and audited clean by
recsys-audit (slow: it runs recsys-pipeline, -loop, -coupons, -reach and -profile first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BIN = Path(sys.executable).parent
COMMANDS = {
    "pipeline": ["recsys-pipeline", "world.preset=tiny",
                 "rank=['requests.test=150','requests.eval=100']"],
    "loop": ["recsys-loop", "world.preset=tiny", "rounds=2", "days=1",
             "first_split.valid_frac=0.35", "first_split.test_frac=0.35"],
    "coupons": ["recsys-coupons", "world.preset=tiny", "world.n_days=4", "world.history_days=1",
                "world.grant_days=2", "ab_days=1"],
    "reach": ["recsys-reach", "world.preset=tiny", "explore_days=2", "days=1"],
    "profile": ["recsys-profile", "data=synthetic-tiny", "segments=4"],
}  # fmt: skip


def _run(args: list[str], env: dict, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(BIN / args[0]), *args[1:]], env=env, capture_output=True,
                         text=True, timeout=1200)  # fmt: skip
    if check and out.returncode:
        raise AssertionError(f"{args[0]} failed:\n{out.stderr[-3000:]}")
    return out


@pytest.mark.slow
def test_every_commands_output_forgotten_and_audited_clean(tmp_path):
    env = {**os.environ, "RECSYS_CACHE_DIR": str(tmp_path / "worlds")}
    for name, args in COMMANDS.items():
        _run([*args, f"hydra.run.dir={tmp_path / name}"], env)
    world = tmp_path / "worlds" / "tiny-0"
    users = pd.read_parquet(world / "users.parquet")["user_id"].to_numpy()
    gone = np.random.default_rng(0).choice(users, len(users) // 100, replace=False)
    (tmp_path / "gone.txt").write_text("\n".join(map(str, gone)) + "\n")
    roots = "roots=[" + ",".join(str(tmp_path / n) for n in [*COMMANDS, "worlds"]) + "]"
    before = _run(["recsys-audit", roots, f"ids={tmp_path / 'gone.txt'}",
                   f"hydra.run.dir={tmp_path / 'a0'}"], env, check=False)  # fmt: skip
    assert before.returncode == 1 and "FOUND forgotten id" in before.stdout
    _run(["recsys-forget", f"users={tmp_path / 'gone.txt'}", roots, "progress=false",
          f"hydra.run.dir={tmp_path / 'f'}"], env)  # fmt: skip
    after = _run(["recsys-audit", roots, f"hydra.run.dir={tmp_path / 'a1'}"], env,
                 check=False)  # fmt: skip
    assert after.returncode == 0, after.stdout[-3000:]
    assert "nothing found" in after.stdout
