"""Sharded training: 2 gloo ranks on CPU (torchrun) against one process, DCP resharding, plans.

A 2-rank run splits every global batch into a block of rows per rank, and each rank's loss is its
term of the whole batch's loss, so the run optimises the single process's objective: validation
metrics equal the plain trainer's to the bit (the two-tower with ``model.portable_pooling``, its
history bags summed by PyTorch as unsharded; with dropout, ``trainer.row_keyed_dropout`` draws
each row's masks from the step's seed, as one process does).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from recsys.models.embeddings import EntityBags
from recsys.training.distributed import DistributedConfig, plan_tables
from recsys.training.distributed_trainer import DistributedTrainer, RankPart
from recsys.training.trainer import TrainerConfig

TIMEOUT_S = 300


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_train(run_dir: Path, overrides: list[str], *, nproc: int = 1) -> dict:
    """``recsys-train`` in fresh processes (``torchrun`` when ``nproc`` > 1); its metrics."""
    train = ["-m", "recsys.cli.train", *overrides, f"hydra.run.dir={run_dir}"]
    launcher = (
        []
        if nproc == 1
        else [
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1",
            f"--master_port={_port()}",
        ]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, *launcher, *train],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((run_dir / "metrics.json").read_text())


def tiny_overrides(cache: Path, model: str, *extra: str, dropout: float = 0.0) -> list[str]:
    return [
        "trainer=distributed",
        f"model={model}",
        f"model.dropout={dropout}",
        "model.dim=16",
        "data=synthetic-tiny",
        f"data.cache_dir={cache}",
        "trainer.max_epochs=1",
        "trainer.batch_size=64",
        "trainer.progress=false",
        "eval_stages=[valid]",
        *extra,
    ]


# coverage@10 counts the tiny world's 240 products seen in any top-10 list: one product in or
# out moves it by 1/240. Measured: with table- or column-wise two-tower tables the gradients are
# summed in another order at 1 rank than at 2, and one product can cross a top-10 boundary
# while the ranking metrics differ by < 1e-4.
COVERAGE_STEP = 1 / 240


def plain_overrides(cache: Path, model: str, *extra: str, dropout: float = 0.0) -> list[str]:
    """The same run on the plain single-process trainer."""
    distributed = tiny_overrides(cache, model, *extra, dropout=dropout)
    return ["trainer.num_threads=1", *(o for o in distributed if o != "trainer=distributed")]


def assert_same_validation(a: dict, b: dict, tol: float = 1e-3) -> None:
    """Validation metrics within ``tol`` (coverage within one product when ``tol`` > 0)."""
    keys = [k for k in a if k.startswith("valid/")]
    assert keys, a
    for key in keys:
        allowed = max(tol, COVERAGE_STEP + 1e-9) if "coverage" in key and tol else tol
        assert abs(a[key] - b[key]) <= allowed, (key, a[key], b[key])


@pytest.fixture(scope="module")
def world_cache(tiny_world_dir):
    return tiny_world_dir.parent


# Every CPU sharding type in one sequential model: the side tables column-wise by default.
SASREC_PLAN = (
    "trainer.distributed.sharding=column_wise",
    "trainer.distributed.tables={product:row_wise,streamer:table_wise,"
    "product_price_band:data_parallel}",
)


def train_here(run_dir: Path, overrides: list[str]) -> dict:
    """``recsys-train`` in this process (a one-process group, closed afterwards)."""
    from recsys.recommenders.experiment import train
    from recsys.training.distributed import stop
    from tests.conftest import compose_config

    try:
        return train(compose_config("train", [*overrides, f"run_dir={run_dir}"]))
    finally:
        stop()


def test_two_ranks_train_the_sequential_model_as_one_process_and_reshard(
    world_cache, tmp_path, one_thread
):
    # Dropout on, its masks drawn per row of the whole batch (trainer.row_keyed_dropout).
    keyed = "trainer.row_keyed_dropout=true"
    overrides = tiny_overrides(world_cache, "sasrec", *SASREC_PLAN, keyed, dropout=0.2)
    two = run_train(tmp_path / "two", overrides, nproc=2)
    one = train_here(tmp_path / "one", plain_overrides(world_cache, "sasrec", keyed, dropout=0.2))
    assert_same_validation(two, one, tol=0.0)
    # Saved by 2 ranks, read whole in one process: the weights best.pt holds, the same scores.
    from recsys.recommenders.restore import restore
    from recsys.training.distributed_checkpoint import load_full_checkpoint

    restored = restore(tmp_path / "two" / "best.pt")
    model = restored.recommender.model
    saved = load_full_checkpoint(tmp_path / "two" / "checkpoint_dcp", model)
    best = model.state_dict()
    assert set(saved) == set(best)
    for key, value in best.items():
        assert torch.equal(saved[key], value), key
    split = restored.data.train_split
    users = split.valid.user[:20]
    before = restored.recommender.score(users, split.train)
    model.load_state_dict(saved)
    assert (restored.recommender.score(users, split.train) == before).all()


def test_two_ranks_train_the_two_tower_as_one_process(world_cache, tmp_path):
    # Every sharding type at once; the history bags summed by PyTorch, as unsharded.
    plan = (
        "trainer.distributed.tables={user:table_wise,product:column_wise,streamer:row_wise,"
        "product_category:data_parallel}",
    )
    same = ("model.portable_pooling=true", "trainer.row_keyed_dropout=true")
    overrides = tiny_overrides(world_cache, "two_tower", *plan, *same, dropout=0.3)
    two = run_train(tmp_path / "two", overrides, nproc=2)
    plain = run_train(
        tmp_path / "plain", plain_overrides(world_cache, "two_tower", *same, dropout=0.3)
    )
    assert_same_validation(two, plain, tol=0.0)


# -- plans that cannot run fail before training --------------------------------------------------


def _bags(rows: int, dim: int = 16) -> torch.nn.Module:
    module = torch.nn.Module()
    module.tables = EntityBags(sizes={"product": rows, "user": 10}, dim=dim, device="meta")
    return module


def test_a_table_over_the_memory_budget_is_refused():
    config = DistributedConfig(enabled=True, sharding="table_wise", memory_budget_mb=10)
    with pytest.raises(
        ValueError, match="183.1 MiB .* on rank 0, over distributed.memory_budget_mb=10"
    ):
        plan_tables(_bags(1_000_000), config, world=2)  # 1M x 16 floats x 3 (Adam) = 183 MiB
    row_wise = DistributedConfig(enabled=True, sharding="row_wise", memory_budget_mb=100)
    assert plan_tables(_bags(1_000_000), row_wise, world=2).plan  # 92 MiB per rank fits


def test_impossible_shardings_are_named():
    with pytest.raises(ValueError, match="width 15 cannot be split column-wise over 2 ranks"):
        plan_tables(_bags(100, dim=15), DistributedConfig(sharding="column_wise"), world=2)
    with pytest.raises(ValueError, match="'grid_shard' is not one of"):
        DistributedConfig(sharding="grid_shard")
    with pytest.raises(ValueError, match="fused_optimizer must be none or one of"):
        DistributedConfig(fused_optimizer="adam")
    with pytest.raises(ValueError, match=r"distributed.tables names \['item'\]"):
        plan_tables(_bags(100), DistributedConfig(tables={"item": "row_wise"}), world=2)


class _Rows:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def smallest_batch(self, batch_size: int) -> int:
        return self.n - (-(-self.n // batch_size) - 1) * batch_size


def test_a_world_size_the_data_cannot_split_is_refused():
    with pytest.raises(ValueError, match="cannot be split over 4 ranks.*smallest batch holds 3"):
        RankPart(_Rows(67), rank=0, world=4, micro=1, batch_size=64)
    part = RankPart(_Rows(66), rank=1, world=2, micro=1, batch_size=64)
    assert part.parts == [(1, 2)]


# -- slow: every sharding type, resuming at another world size, a killed rank --------------------


MATRIX = [
    (family, kind)
    for family in ("sasrec", "two_tower")
    for kind in ("table_wise", "row_wise", "column_wise", "data_parallel")
]


@pytest.mark.slow
@pytest.mark.parametrize(("family", "kind"), MATRIX)
def test_each_sharding_type_trains_as_one_process(world_cache, tmp_path, family, kind):
    extra = ("model.portable_pooling=true",) if family == "two_tower" else ()
    sharded = f"trainer.distributed.sharding={kind}"
    two = run_train(tmp_path / "two", tiny_overrides(world_cache, family, *extra, sharded), nproc=2)
    plain = run_train(tmp_path / "plain", plain_overrides(world_cache, family, *extra))
    assert_same_validation(two, plain, tol=0.0)


@pytest.mark.slow
def test_saved_by_one_process_resumed_by_two_ranks(world_cache, tmp_path):
    epochs = "trainer.max_epochs=2"
    full = run_train(tmp_path / "full", tiny_overrides(world_cache, "sasrec", epochs), nproc=2)
    micro = "trainer.distributed.micro_batches=2"
    run_train(tmp_path / "run", tiny_overrides(world_cache, "sasrec", micro))
    resumed = run_train(
        tmp_path / "run", tiny_overrides(world_cache, "sasrec", epochs, "resume=true"), nproc=2
    )
    assert_same_validation(resumed, full)


def _rank_pid(root: int, rank: int) -> int:
    for child in Path(f"/proc/{root}/task/{root}/children").read_text().split():
        if f"RANK={rank}".encode() in Path(f"/proc/{child}/environ").read_bytes().split(b"\0"):
            return int(child)
    raise AssertionError(f"no rank {rank} under pid {root}")


@pytest.mark.slow
def test_a_rank_killed_mid_epoch_resumes_to_the_same_metrics(world_cache, tmp_path):
    overrides = tiny_overrides(
        world_cache,
        "sasrec",
        "trainer.max_epochs=3",
        "trainer.batch_size=16",
        "trainer.checkpoint_every_steps=4",
    )
    full = run_train(tmp_path / "full", overrides, nproc=2)
    run = tmp_path / "killed"
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_port()}",
        "-m",
        "recsys.cli.train",
        *overrides,
        f"hydra.run.dir={run}",
    ]
    proc = subprocess.Popen(launch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = run / "checkpoint_dcp" / "meta.pt"
    while True:
        assert proc.poll() is None, "the run ended before a mid-epoch checkpoint"
        try:  # the folder is swapped whole after each save: read between swaps
            state = torch.load(meta, weights_only=False)["train_state"]
        except (OSError, EOFError, RuntimeError):
            state = None
        if state and state["epoch"] >= 1 and state["step"] > 0:
            break
        time.sleep(0.1)
    os.kill(_rank_pid(proc.pid, 1), 9)
    assert proc.wait(timeout=120) != 0
    resumed = run_train(run, [*overrides, "resume=true"], nproc=2)
    assert_same_validation(resumed, full, tol=0.0)


def _time_is_up_on(rank: int, port: int, out: str) -> None:
    """One of two gloo ranks: only rank 0's own clock is past trainer.max_seconds."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    trainer = object.__new__(DistributedTrainer)  # only the clock matters here
    trainer.config = TrainerConfig(max_seconds=10.0)
    trainer._train_seconds, trainer._t0 = (11.0 if rank == 0 else 0.0), time.perf_counter()
    Path(out, f"{rank}.json").write_text(json.dumps(trainer._time_is_up()))
    dist.destroy_process_group()


def test_every_rank_stops_for_time_after_the_same_step(tmp_path):
    """A rank out of time alone would wait in the checkpoint while the other ran a step."""
    torch.multiprocessing.spawn(_time_is_up_on, args=(_port(), str(tmp_path)), nprocs=2)
    assert [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)] == [True, True]
