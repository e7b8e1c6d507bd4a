"""Training windows on disk, streamed back per rank: the sequential model's sharded input.

``trainer.distributed.input.mode=streamed`` trains the sequential model from a Parquet file of
its training windows (one window a row; inputs, targets, target times and look-ahead as
fixed-size lists) instead of tensors of every window on every rank. Rank 0 writes the file once
per run from the token streams, a block of users at a time (``training_windows`` is per user, so
the blocks together are exactly the in-memory windows, in user order); each rank then reads
only its own row groups in chunks (``recsys.data.parquet_shards``), so what a rank holds of the
training rows is bounded by ``distributed.input.chunk_mib``, not by the data. Batches are built
by ``WindowDataset.batch`` on each batch's rows, so targets, live sets and random-future
targets are what the in-memory path computes for the same windows; the order differs (each
rank shuffles its own rows), so a streamed run is not the in-memory run's equal, only its
own on a re-run with the same world size, seed and epochs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from recsys.data import parquet_shards as shards
from recsys.inputs.batch_parts import part_slice
from recsys.inputs.tokens import TokenLog
from recsys.inputs.windows import SequenceBatch, WindowDataset, Windows, training_windows

FILE = "train_windows.parquet"
# Windows fields stored as "<group>.<name>" columns, in this order.
GROUPS = ("inputs", "targets", "target_time", "lagged", "lagged_time", "lookahead")

log = logging.getLogger(__name__)


def user_block(tokens: TokenLog, start: int, stop: int) -> TokenLog:
    """The streams of users ``start`` .. ``stop - 1`` as a log of their own (rows from 0)."""
    a, b = int(tokens.indptr[start]), int(tokens.indptr[stop])
    cut = (tokens.kind[a:b], tokens.entity[a:b], tokens.action[a:b], tokens.ts[a:b])
    return TokenLog(tokens.indptr[start : stop + 1] - a, *cut, timed=tokens.timed)


def to_table(windows: Windows, user_offset: int = 0) -> pa.Table:
    """One row per window: ``user`` and every (U, width) array as a fixed-size list column."""
    cols = {"user": pa.array(np.asarray(windows.users, dtype=np.int64) + user_offset)}
    for group in GROUPS:
        for name, a in getattr(windows, group).items():
            flat = pa.array(np.ascontiguousarray(a, dtype=np.int64).reshape(-1))
            cols[f"{group}.{name}"] = pa.FixedSizeListArray.from_arrays(flat, a.shape[1])
    meta = {"heads": json.dumps(windows.heads)}
    return pa.table(cols).replace_schema_metadata(meta)


def from_table(table: pa.Table) -> Windows:
    """``to_table``'s inverse."""
    parts: dict[str, dict[str, np.ndarray]] = {g: {} for g in GROUPS}
    for name in table.column_names[1:]:
        group, field = name.split(".", 1)
        column = table.column(name).combine_chunks()
        width = column.type.list_size
        # A copy: Arrow's buffers are read-only, and tensors are made from these arrays.
        parts[group][field] = column.flatten().to_numpy().reshape(-1, width).copy()
    heads = json.loads(table.schema.metadata[b"heads"])
    users = table.column("user").to_numpy().copy()
    return Windows(users=users, heads=heads, **parts)


def write_windows(
    tokens: TokenLog, path: Path, *, users_per_block: int, row_group_rows: int, **window_args
) -> int:
    """Write the training windows of ``tokens`` (``training_windows(tokens, **window_args)``) in
    row groups of ``row_group_rows``, ``users_per_block`` users at a time; the rows written."""
    tmp = path.with_name(f".{path.name}.tmp")
    writer, pending, total = None, [], 0
    for start in range(0, tokens.n_users, users_per_block):
        stop = min(start + users_per_block, tokens.n_users)
        table = to_table(training_windows(user_block(tokens, start, stop), **window_args), start)
        writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd")
        pending.append(table)
        total += table.num_rows
        held = pa.concat_tables(pending)
        full = held.num_rows // row_group_rows * row_group_rows
        if full:
            writer.write_table(held.slice(0, full), row_group_size=row_group_rows)
        pending = [held.slice(full)]
    if pending and pending[0].num_rows:
        writer.write_table(pending[0], row_group_size=row_group_rows)
    if writer is not None:
        writer.close()
    if total == 0:
        tmp.unlink(missing_ok=True)
        raise ValueError("sasrec: no user has two or more training tokens")
    os.replace(tmp, path)
    return total


@dataclass(frozen=True)
class WindowSource:
    """What the sequential model trains on, to be written and streamed per rank."""

    tokens: TokenLog | None  # None on ranks that only read (rank 0 writes the file)
    window_args: Mapping[str, object]  # training_windows' keyword arguments
    config: shards.InputConfig
    targets: str = "next"
    live: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
    n_entities: Mapping[str, int] | None = None

    def for_rank(
        self,
        *,
        rank: int,
        world: int,
        micro: int,
        batch_size: int,
        folder: Path | None,
        share: Callable[[object], object],
    ) -> StreamedWindows:
        """Rank 0 writes the file (every rank learns whether it could), each rank opens its
        part; every split that cannot run raises on every rank before training."""
        if folder is None:
            raise ValueError("distributed.input.mode=streamed writes its windows to the run folder")
        path = Path(folder) / FILE
        failed = None
        if rank == 0:
            failed = self._write(path)
        failed = share(failed)
        if failed:
            raise ValueError(failed)
        return StreamedWindows.open(self, path, rank=rank, world=world, micro=micro,
                                    batch_size=batch_size)  # fmt: skip

    def _write(self, path: Path) -> str | None:
        try:
            # Blocks of users keep the window arrays being built (and their intermediates) a
            # small part of what rank 0 already holds, whatever the number of users.
            rows = write_windows(
                self.tokens,
                path,
                users_per_block=max(self.config.row_group_rows, 1024),
                row_group_rows=self.config.row_group_rows,
                **self.window_args,
            )
        except (ValueError, OSError) as error:
            return f"streamed input: writing {path}: {error}"
        log.info("streamed input: %d training windows written to %s", rows, path)
        return None


class StreamedWindows:
    """One rank's windows, batch by batch, as the trainer's dataset (``micro`` parts a step)."""

    def __init__(self, source: WindowSource, reader: shards.RankReader, sizes, *, n_rows: int,
                 micro: int, groups: list[int]) -> None:  # fmt: skip
        self.source, self.reader, self.sizes = source, reader, sizes
        self.n_rows, self.micro, self.groups = n_rows, micro, groups
        self.digests: dict[int, str] = {}  # epoch -> hash of the users in batch order

    @classmethod
    def open(cls, source: WindowSource, path: Path, *, rank: int, world: int, micro: int,
             batch_size: int) -> StreamedWindows:  # fmt: skip
        where = f"streamed input {path}"
        groups = shards.row_groups([path])
        parts = shards.assign(groups, world, where)
        n_rows = sum(g.rows for g in groups)
        steps = math.ceil(n_rows / batch_size)
        held = [sum(g.rows for g in p) for p in parts]
        short = min(range(world), key=lambda r: held[r])
        if held[short] < steps * micro:
            raise ValueError(
                f"{where}: rank {short} holds {held[short]} windows, fewer than one per part of "
                f"its {steps} steps x {micro} micro-batches (trainer.batch_size={batch_size}, "
                f"{n_rows} windows); lower row_group_rows, raise the batch size or use fewer ranks"
            )
        width = shards.row_bytes(pq.ParquetFile(path).schema_arrow)
        chunk = shards.chunk_rows(source.config.chunk_mib, width, where)
        largest = max(-(-h // steps) for h in held)
        if largest > chunk:
            raise ValueError(
                f"{where}: a rank's batch of {largest} windows ({largest * width} bytes) does not "
                f"fit distributed.input.chunk_mib={source.config.chunk_mib:g}; raise it"
            )
        reader = shards.RankReader(parts[rank], chunk_rows=chunk, rank=rank)
        index = {(g.path, g.index): i for i, g in enumerate(groups)}
        mine = [index[(g.path, g.index)] for g in parts[rank]]
        return cls(source, reader, shards.step_sizes(held[rank], steps), n_rows=n_rows,
                   micro=micro, groups=mine)  # fmt: skip

    def __len__(self) -> int:
        return self.n_rows

    def n_batches(self, batch_size: int) -> int:
        return len(self.sizes)

    def stats(self) -> dict:
        """What this rank read: its row groups, rows, chunk, most rows held, batch orders."""
        return {
            "row_groups": self.groups,
            "rows": self.reader.rows,
            "chunk_rows": self.reader.chunk_rows,
            "peak_rows": self.reader.peak_rows,
            "order_digests": {str(e): d for e, d in self.digests.items()},
        }

    def epoch(self, *, batch_size: int, seed: int, epoch: int, start_step: int = 0,
              bucket_pool: int = 0) -> Iterator[list[SequenceBatch]]:  # fmt: skip
        """Per step from ``start_step`` on, this rank's batch as ``micro`` parts."""
        if bucket_pool > 0:
            raise ValueError("trainer.bucket_pool is not supported with streamed input")
        digest = hashlib.sha1()
        s = self.source
        for step, table in enumerate(self.reader.batches(self.sizes, seed=seed, epoch=epoch)):
            windows = from_table(table)
            digest.update(windows.users.tobytes())
            self.digests[epoch] = digest.hexdigest()
            if step < start_step:
                continue
            data = WindowDataset(windows, targets=s.targets, live=s.live, n_entities=s.n_entities)
            u = data.draws(len(windows), [seed, epoch, step, 2])
            rows = torch.arange(len(windows))
            parts = [part_slice(len(windows), (j, self.micro)) for j in range(self.micro)]
            yield [data.batch(rows[p], None if u is None else u[p]) for p in parts]
