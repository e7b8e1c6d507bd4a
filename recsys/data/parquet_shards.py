"""One rank's part of a Parquet file, read in chunks: sharded, streamed training input.

A file of model-ready rows (one training example a row, written in row groups) is split over
the ranks of a distributed run by whole row groups: rank r takes a contiguous run of row groups
holding about ``1/W`` of the rows, and never opens the others. Each epoch it visits its row
groups in an order drawn from (seed, epoch, rank), reads each with
``ParquetFile.iter_batches`` in chunks, shuffles every chunk with a generator of (seed, epoch,
rank, chunk) and cuts the rows into the epoch's batches. Every rank takes the same number of
steps, ``ceil(rows / batch_size)`` (what one process takes), its rows dealt as evenly as
possible over them, so the ranks' collectives stay in step.

Rows held at once (the chunk being cut plus what is left of the last one) never exceed
``chunk_rows``, computed from a memory budget and the file's decoded row width; the reader
counts them (``peak_rows``). Same file, world size, seed and epoch: the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MODES = ("memory", "streamed")


@dataclass(frozen=True)
class InputConfig:
    """How the ranks of a distributed run get their training rows."""

    mode: str = "memory"  # memory: every rank builds them all | streamed: its part from Parquet
    chunk_mib: float = 64.0  # streamed: decoded rows one rank holds at once
    row_group_rows: int = 1024  # streamed: rows per row group of the written file

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"distributed.input.mode must be one of {MODES}, got {self.mode!r}")
        if self.row_group_rows < 1:
            raise ValueError(
                f"distributed.input.row_group_rows must be >= 1, got {self.row_group_rows}"
            )

    @classmethod
    def of(cls, section) -> InputConfig:
        return section if isinstance(section, cls) else cls(**dict(section or {}))


@dataclass(frozen=True)
class RowGroup:
    path: Path
    index: int  # within its file
    rows: int


def row_groups(paths: Sequence[str | Path]) -> list[RowGroup]:
    """Every row group of the files, in file order (read from the footers only)."""
    out = []
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        out += [
            RowGroup(Path(path), i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)
        ]
    return out


def row_bytes(schema: pa.Schema) -> int:
    """Bytes of one decoded row of fixed-width columns (lists of a fixed size count whole)."""
    total = 0
    for f in schema:
        kind, count = f.type, 1
        while pa.types.is_fixed_size_list(kind):
            count, kind = count * kind.list_size, kind.value_type
        if not pa.types.is_primitive(kind):
            raise ValueError(f"streamed input: column {f.name!r} has no fixed width ({f.type})")
        total += count * kind.bit_width // 8
    return total


def chunk_rows(budget_mib: float, width: int, where: str) -> int:
    """Rows of ``width`` bytes that fit the budget; an error when not even one does."""
    rows = int(budget_mib * 2**20 // width)
    if rows < 1:
        raise ValueError(
            f"{where}: distributed.input.chunk_mib={budget_mib:g} ({budget_mib * 2**20:.0f} bytes) "
            f"is smaller than one row ({width} bytes); raise it"
        )
    return rows


def assign(groups: Sequence[RowGroup], world: int, where: str) -> list[list[RowGroup]]:
    """Contiguous runs of whole row groups per rank, each about ``1/world`` of the rows."""
    if len(groups) < world:
        raise ValueError(
            f"{where}: {len(groups)} row groups cannot be split over {world} ranks (each rank "
            "reads whole row groups); lower distributed.input.row_group_rows or the processes"
        )
    rows = np.array([g.rows for g in groups], dtype=np.int64)
    middle = np.cumsum(rows) - rows / 2  # a group goes to the rank its middle row falls in
    wanted = (middle * world // max(rows.sum(), 1)).astype(np.int64)
    owner: list[int] = []
    for i, w in enumerate(wanted.tolist()):
        # Kept contiguous (no rank skipped) with enough groups left for the ranks after it.
        low = max(owner[-1] if owner else 0, i - (len(groups) - world))
        high = owner[-1] + 1 if owner else 0
        owner.append(min(max(w, low), high))
    return [[g for g, o in zip(groups, owner, strict=True) if o == r] for r in range(world)]


def step_sizes(rows: int, steps: int) -> np.ndarray:
    """``rows`` dealt over ``steps`` batches as evenly as possible (larger ones first)."""
    return np.full(steps, rows // steps, dtype=np.int64) + (np.arange(steps) < rows % steps)


class RankReader:
    """One rank's row groups, read in chunks and cut into batches of given sizes."""

    def __init__(self, groups: Sequence[RowGroup], *, chunk_rows: int, rank: int) -> None:
        self.groups, self.chunk_rows, self.rank = list(groups), chunk_rows, rank
        self.rows = sum(g.rows for g in self.groups)
        self.peak_rows = 0  # most rows held at once so far

    def batches(self, sizes: Sequence[int], *, seed: int, epoch: int) -> Iterator[pa.Table]:
        """The epoch's batches (``sizes[k]`` rows at step k), chunk by chunk."""
        if sum(sizes) != self.rows:
            raise ValueError(
                f"rank {self.rank}: batches of {sum(sizes)} rows, it holds {self.rows}"
            )
        largest = max(sizes, default=0)
        if largest > self.chunk_rows:
            raise ValueError(
                f"rank {self.rank}: a batch of {largest} rows does not fit a chunk of "
                f"{self.chunk_rows} rows; raise distributed.input.chunk_mib"
            )
        # Less than a batch is carried over, so reading chunk - (largest - 1) rows at a time
        # keeps what is held within ``chunk_rows``.
        read = self.chunk_rows - max(largest - 1, 0)
        carry, step = None, 0
        for i, chunk in enumerate(self._chunks(read, seed, epoch)):
            rng = np.random.default_rng([seed, epoch, self.rank, i])
            chunk = chunk.take(rng.permutation(chunk.num_rows))
            carry = chunk if carry is None else pa.concat_tables([carry, chunk])
            self.peak_rows = max(self.peak_rows, carry.num_rows)
            while step < len(sizes) and carry.num_rows >= sizes[step]:
                yield carry.slice(0, sizes[step])
                carry, step = carry.slice(sizes[step]), step + 1

    def _chunks(self, read: int, seed: int, epoch: int) -> Iterator[pa.Table]:
        order = np.random.default_rng([seed, epoch, self.rank]).permutation(len(self.groups))
        for g in (self.groups[i] for i in order):
            with pq.ParquetFile(g.path) as f:
                for batch in f.iter_batches(batch_size=read, row_groups=[g.index]):
                    yield pa.Table.from_batches([batch])
