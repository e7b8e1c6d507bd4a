"""recsys-forget (recsys.erasure.forget) on a tiny tree of every kind of artifact: the audit then
finds nothing, the model still loads, tombstones keep ingestion and training from bringing the
users back, and a run killed midway and re-run ends with the tree an uninterrupted run writes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.erasure.audit import audit
from recsys.erasure.forget import JOURNAL, KILL_AFTER, ForgetRequest, forget
from recsys.privacy.tombstones import Tombstones

TS = 1_800_000_000


@pytest.fixture(scope="module")
def tree(trained_two_tower, tmp_path_factory):
    """A run folder (the two-tower with its index, a market day with planted opt-outs,
    profiles) and its world cache, built once; tests work on copies."""
    from recsys.cli.index import build_indexes
    from recsys.data.tables import load_tables
    from recsys.market import Market, MarketConfig, PopularityPolicy
    from recsys.profiling import Profiler, ProfileStore
    from tests.conftest import compose_config

    ckpt, cache = trained_two_tower
    root = tmp_path_factory.mktemp("tree")
    shutil.copytree(cache, root / "cache")
    shutil.copytree(ckpt.parent, root / "run" / "two_tower")
    build_indexes(compose_config("index", [f"checkpoint={root / 'run' / 'two_tower'}",
                                           f"cache_dir={root / 'cache'}"]))  # fmt: skip
    market = Market(MarketConfig(preset="tiny", seed=0, opt_out_share=0.1), root / "run" / "m")
    market.run(PopularityPolicy(), days=1)
    tables = load_tables(root / "cache" / "tiny-0")
    ProfileStore(root / "run" / "profiles").save(Profiler.for_tables(tables).build(tables.events))
    return root


def _copy(tree: Path, to: Path) -> Path:
    shutil.copytree(tree, to)
    return to


def _users(root: Path, share: float = 0.01, seed: int = 0) -> np.ndarray:
    users = pd.read_parquet(root / "cache" / "tiny-0" / "users.parquet")["user_id"].to_numpy()
    return np.random.default_rng(seed).choice(users, max(1, int(share * len(users))), False)


def _request(root: Path, users: np.ndarray) -> ForgetRequest:
    return ForgetRequest(tuple(users.tolist()), (str(root / "run"), str(root / "cache")), TS,
                         progress=False)  # fmt: skip


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def test_forgetting_reaches_every_artifact_and_the_model_still_loads(tree, tmp_path):
    from recsys.recommenders.restore import restore

    root = _copy(tree, tmp_path / "t")
    gone = _users(root)
    roots = [root / "run", root / "cache"]
    before = audit(roots, ids=gone, pii=False)
    kinds = {Path(h.path).suffix for h in before.hits}
    assert {".parquet", ".npy", ".pt", ".pkl"} <= kinds  # the users were everywhere
    report = forget(_request(root, gone))
    assert report.removed["table"] > 0 and report.removed["checkpoint"] == 2 * len(gone)
    after = audit(roots, pii=False)  # the ids come from the tombstones alone
    assert after.ids == len(gone) and after.hits == [], after.summary()
    assert not (root / "run" / JOURNAL).exists()
    assert Tombstones.read(root / "cache").mask(gone).all()
    restored = restore(root / "run" / "two_tower", cache_dir=str(root / "cache"))
    vocab = restored.recommender.context.vocabs.user
    assert (vocab.encode(gone) == 1).all()  # a forgotten viewer reads the unknown row
    assert len(vocab) == len(before_vocab(tree)) + 2 - len(gone)  # + padding and unknown


def before_vocab(tree: Path) -> np.ndarray:
    return np.load(tree / "cache" / "tiny-0" / "vocab" / "user.npy")


def test_a_killed_run_finishes_with_the_uninterrupted_tree(tree, tmp_path):
    work = tmp_path / "t"
    gone = _users(tree, share=0.02, seed=1)
    forget(_request(_copy(tree, work), gone))
    whole = _digest(work)
    shutil.rmtree(work)
    _copy(tree, work)
    code = ("import sys; from recsys.erasure.forget import ForgetRequest, forget; "
            f"forget(ForgetRequest(tuple(int(u) for u in sys.argv[1:]), "
            f"({str(work / 'run')!r}, {str(work / 'cache')!r}), {TS}, progress=False))"
            )  # fmt: skip
    env = {**os.environ, KILL_AFTER: "40"}
    killed = subprocess.run([sys.executable, "-c", code, *map(str, gone)], env=env,
                            capture_output=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert (work / "run" / JOURNAL).is_file()  # stopped midway, its journal left behind
    assert _digest(work) != whole
    report = forget(_request(work, gone))
    assert report.resumed
    assert _digest(work) == whole


def test_tombstones_keep_training_data_and_reingestion_from_bringing_users_back(tmp_path):
    from recsys.cli.ingest import settings_from
    from recsys.data.ingest import ingest_files
    from recsys.recommenders.data import DataConfig, load_sequential_data
    from recsys.simulation import SimConfig, simulate
    from tests.conftest import compose_config

    world = tmp_path / "world"
    simulate(SimConfig.from_preset("tiny", seed=4), world)
    gone = pd.read_parquet(world / "users.parquet")["user_id"].to_numpy()[:5]
    Tombstones(gone).write(world)
    data = load_sequential_data(DataConfig(name="w", format="world", path=str(world),
                                           val_protocol="live", protocols=("live",)))  # fmt: skip
    assert not np.isin(gone, data.tables.events["user_id"].to_numpy()).any()
    assert not np.isin(gone, data.tables.users["user_id"].to_numpy()).any()
    out = tmp_path / "ingested"
    cfg = compose_config("ingest", ["tables=schema", f"source={world}", f"out_dir={out}",
                                    "pseudonymise=false", "progress=false"])  # fmt: skip
    ingest_files(settings_from(cfg))
    forget(ForgetRequest(tuple(gone.tolist()), (str(out),), TS, progress=False))
    report = ingest_files(settings_from(cfg))  # the old raw files again
    assert report.tombstoned["events"] > 0 and report.tombstoned["users"] == len(gone)
    assert "rows of forgotten users dropped" in report.summary()
    assert audit([out], pii=False).hits == []


def test_a_journal_for_other_users_is_refused(tree, tmp_path):
    root = _copy(tree, tmp_path / "t")
    (root / "run" / JOURNAL).write_text('{"users": [1, 2]}')
    with pytest.raises(ValueError, match="unfinished job for other users"):
        forget(_request(root, _users(root)))
