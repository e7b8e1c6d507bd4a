"""Streamed, sharded training input: each rank reads its own row groups of the window file in
chunks (``trainer.distributed.input.mode=streamed``).

The file holds exactly the in-memory windows; the ranks' parts are disjoint and cover it; the
rows a reader holds stay within its chunk; batches repeat for the same seed and epoch and change
with the epoch; splits that cannot run fail before training, on every rank of a 2-rank run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recsys.data import parquet_shards as shards
from recsys.data.parquet_shards import InputConfig
from recsys.inputs.tokens import world_context
from recsys.inputs.window_file import (
    FILE,
    StreamedWindows,
    WindowSource,
    from_table,
    user_block,
    write_windows,
)
from recsys.inputs.windows import training_windows
from tests.test_distributed import run_train, tiny_overrides, train_here

HEADS = {"product": 1, "streamer": 2}
ARGS = {"maxlen": 20, "heads": HEADS, "n_gap_buckets": 16}


@pytest.fixture(scope="module")
def tokens(tiny_world):
    return world_context(tiny_world).log


def open_rank(source: WindowSource, folder: Path, rank: int, world: int, batch_size: int = 32):
    return source.for_rank(rank=rank, world=world, micro=1, batch_size=batch_size, folder=folder,
                           share=lambda x: x)  # fmt: skip


def epoch_users(data, seed: int = 0, epoch: int = 0) -> list[np.ndarray]:
    return [part[0].user.numpy() for part in data.epoch(batch_size=32, seed=seed, epoch=epoch)]


def test_the_file_holds_exactly_the_in_memory_windows(tokens, tmp_path):
    args = {**ARGS, "every_target": True, "target_lag_s": 600, "keep_next": True}
    whole = training_windows(tokens, **args)
    rows = write_windows(tokens, tmp_path / FILE, users_per_block=37, row_group_rows=50, **args)
    back = from_table(pq.read_table(tmp_path / FILE))
    assert rows == len(whole) == len(back) > 0
    assert pq.ParquetFile(tmp_path / FILE).metadata.row_group(0).num_rows == 50
    assert np.array_equal(back.users, whole.users)
    assert back.heads == whole.heads
    for group in ("inputs", "targets", "target_time", "lagged", "lagged_time", "lookahead"):
        mine, theirs = getattr(back, group), getattr(whole, group)
        assert set(mine) == set(theirs), group
        for name, a in theirs.items():
            assert np.array_equal(mine[name], a), (group, name)


def test_ranks_read_disjoint_parts_in_bounded_chunks_in_a_seeded_order(tokens, tmp_path):
    config = InputConfig(mode="streamed", chunk_mib=0.05, row_group_rows=16)
    source = WindowSource(tokens, ARGS, config, n_entities={"product": 300, "streamer": 30})
    n = len(training_windows(tokens, **ARGS))
    open_rank(source, tmp_path, 0, 1)  # writes the file
    width = shards.row_bytes(pq.ParquetFile(tmp_path / FILE).schema_arrow)
    n_groups = pq.ParquetFile(tmp_path / FILE).metadata.num_row_groups
    chunk = shards.chunk_rows(config.chunk_mib, width, "test")
    assert 32 <= chunk < n / 4  # the data is several chunks per rank
    for world in (2, 3):
        ranks = [open_rank(source, tmp_path, r, world) for r in range(world)]
        seen = [epoch_users(data) for data in ranks]
        assert {len(s) for s in seen} == {math.ceil(n / 32)}  # every rank steps together
        users = np.concatenate([np.concatenate(s) for s in seen])
        assert len(users) == n and len(np.unique(users)) == n  # disjoint, union: all windows
        groups = sorted(g for data in ranks for g in data.groups)
        assert groups == list(range(n_groups))  # whole row groups, each read by one rank
        for data in ranks:
            assert data.reader.chunk_rows == chunk
            assert 0 < data.reader.peak_rows <= chunk
        again = [epoch_users(open_rank(source, tmp_path, r, world)) for r in range(world)]
        for a, b in zip(seen, again, strict=True):
            assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        resumed = ranks[0].epoch(batch_size=32, seed=0, epoch=0, start_step=3)
        assert all(np.array_equal(p[0].user.numpy(), u) for p, u in zip(resumed, seen[0][3:],
                                                                        strict=True))  # fmt: skip
        later = epoch_users(ranks[0], epoch=1)
        assert not np.array_equal(np.concatenate(later), np.concatenate(seen[0]))
        assert np.array_equal(np.sort(np.concatenate(later)), np.sort(np.concatenate(seen[0])))


def test_row_groups_are_assigned_contiguously_to_every_rank():
    groups = [shards.RowGroup(Path("f"), i, rows) for i, rows in enumerate([1, 1000, 1, 1, 1])]
    for world in range(1, 6):
        parts = shards.assign(groups, world, "test")
        assert all(parts) and [g for p in parts for g in p] == groups
    halves = shards.assign([shards.RowGroup(Path("f"), i, 10) for i in range(6)], 2, "test")
    assert [len(p) for p in halves] == [3, 3]
    assert list(shards.step_sizes(10, 4)) == [3, 3, 2, 2]


def test_splits_that_cannot_run_fail_before_training(tokens, tmp_path):
    def source(**config) -> WindowSource:
        return WindowSource(tokens, ARGS, InputConfig(mode="streamed", **config))

    with pytest.raises(ValueError, match="row groups cannot be split over 4 ranks"):
        open_rank(source(row_group_rows=10_000), tmp_path, 0, 4)
    with pytest.raises(ValueError, match=r"chunk_mib=0.001 .* smaller than one row"):
        open_rank(source(chunk_mib=0.001, row_group_rows=16), tmp_path, 0, 2)
    with pytest.raises(ValueError, match="does not fit distributed.input.chunk_mib"):
        open_rank(source(chunk_mib=0.05, row_group_rows=16), tmp_path, 0, 2, batch_size=256)
    with pytest.raises(ValueError, match="fewer than one per part"):
        open_rank(source(row_group_rows=8), tmp_path, 0, 2, batch_size=1)
    with pytest.raises(ValueError, match="distributed.input.mode must be one of"):
        InputConfig(mode="stream")
    with pytest.raises(ValueError, match="no user has two or more training tokens"):
        write_windows(user_block(tokens, 0, 0), tmp_path / "none.parquet", users_per_block=8,
                      row_group_rows=8, **ARGS)  # fmt: skip
    assert not list(tmp_path.glob("*none.parquet*"))


def test_two_ranks_stream_disjoint_parts_in_the_order_read_again(tiny_world_dir, tmp_path):
    """2 gloo ranks under torchrun: what each read over two epochs (``ranks.json``), and the
    same batch orders when each rank's part is read again from the file."""
    config = InputConfig(mode="streamed", chunk_mib=0.2, row_group_rows=32)
    stream = (
        f"trainer.distributed.input.mode={config.mode}",
        f"trainer.distributed.input.row_group_rows={config.row_group_rows}",
        f"trainer.distributed.input.chunk_mib={config.chunk_mib}",
        "trainer.max_epochs=2",
        "trainer.patience=0",
    )
    metrics = run_train(tmp_path, tiny_overrides(tiny_world_dir.parent, "sasrec", *stream), nproc=2)
    assert metrics["valid/product/live/ndcg@10"] > 0
    ranks = [r["input"] for r in json.loads((tmp_path / "ranks.json").read_text())]
    meta = pq.ParquetFile(tmp_path / FILE).metadata
    assert sorted(ranks[0]["row_groups"] + ranks[1]["row_groups"]) == list(
        range(meta.num_row_groups)
    )
    assert not set(ranks[0]["row_groups"]) & set(ranks[1]["row_groups"])
    assert ranks[0]["rows"] + ranks[1]["rows"] == meta.num_rows
    source = WindowSource(None, {}, config)
    for rank, read in enumerate(ranks):
        assert read["peak_rows"] <= read["chunk_rows"] < meta.num_rows / 4
        assert read["order_digests"]["0"] != read["order_digests"]["1"]
        again = StreamedWindows.open(source, tmp_path / FILE, rank=rank, world=2, micro=1,
                                     batch_size=64)  # fmt: skip
        for epoch in (0, 1):
            assert len(list(again.epoch(batch_size=64, seed=0, epoch=epoch))) == math.ceil(
                meta.num_rows / 64
            )
        assert read["order_digests"] == {str(e): d for e, d in again.digests.items()}


def test_streamed_input_is_refused_for_a_model_without_a_streamed_form(tiny_world_dir, tmp_path):
    overrides = tiny_overrides(tiny_world_dir.parent, "two_tower",
                               "trainer.distributed.input.mode=streamed")  # fmt: skip
    with pytest.raises(ValueError, match="model 'two_tower' has no streamed input"):
        train_here(tmp_path, overrides)


@pytest.mark.slow
def test_a_streamed_run_resumed_after_one_epoch_ends_as_an_uninterrupted_one(
    tiny_world_dir, tmp_path
):
    stream = (
        "trainer.distributed.input.mode=streamed",
        "trainer.distributed.input.row_group_rows=32",
        "trainer.patience=0",
    )
    overrides = tiny_overrides(tiny_world_dir.parent, "sasrec", *stream)
    whole = run_train(tmp_path / "whole", [*overrides, "trainer.max_epochs=2"], nproc=2)
    run_train(tmp_path / "cut", overrides, nproc=2)
    resumed = run_train(tmp_path / "cut", [*overrides, "trainer.max_epochs=2", "resume=true"],
                        nproc=2)  # fmt: skip
    keys = [k for k in whole if k.startswith("valid/")]
    assert keys and all(resumed[k] == whole[k] for k in keys)
