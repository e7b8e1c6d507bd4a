"""Raw table files read in chunks of rows: Parquet, CSV and JSON Lines.

A table is one file or a folder of part files (read in name order). Each chunk carries the
file it came from and the file row of its first row, so every fault names file and row. Rows
that cannot be read at all are not dropped: they come as empty rows with a reason (a JSON
line that does not parse; the last line of a text file that ends without a line break, i.e. a
file cut off mid-write), and validation rejects them with that reason.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

SUFFIXES = {"parquet": (".parquet", ".pq"), "csv": (".csv", ".tsv"), "jsonl": (".jsonl", ".json")}
TRUNCATED = "truncated last line (the file does not end with a line break)"


@dataclass(frozen=True)
class Chunk:
    frame: pd.DataFrame
    file: Path
    first_row: int  # 0-based row of the file (data rows; a CSV header is not counted)
    unreadable: dict[int, str] = field(default_factory=dict)  # chunk row -> why


@dataclass(frozen=True)
class ReadOptions:
    chunk_rows: int = 1_000_000
    delimiter: str = ","
    # Raw columns read as text whatever they look like: ids stay exact (no float detour when a
    # CSV column has blanks) and a user id hashes the same from every format.
    text_columns: tuple[str, ...] = ()


def file_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    for fmt, suffixes in SUFFIXES.items():
        if path.suffix.lower() in suffixes:
            return fmt
    raise ValueError(f"{path}: unknown format by its suffix; set format=parquet|csv|jsonl")


def table_files(path: Path, declared: str) -> list[Path]:
    """The file, or the folder's files of the format (by suffix), in name order; a path without
    a suffix also finds ``<path>.parquet`` / ``.csv`` / ... (``users`` -> ``users.csv``)."""
    if not path.exists() and not path.suffix:
        suffixes = [s for fmt, ss in SUFFIXES.items() if declared in ("auto", fmt) for s in ss]
        path = next((path.with_suffix(s) for s in suffixes if path.with_suffix(s).is_file()), path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no raw table at {path} (nor a file of it with a known suffix)")
    suffixes = tuple(s for fmt, ss in SUFFIXES.items() if declared in ("auto", fmt) for s in ss)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise FileNotFoundError(f"{path}: no {declared} part files ({', '.join(suffixes)})")
    return files


def total_rows(files: Sequence[Path], declared: str) -> int | None:
    """Rows of every file when the format says so cheaply (Parquet metadata), else None."""
    if all(file_format(f, declared) == "parquet" for f in files):
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return None


def read_chunks(path: Path, declared: str, options: ReadOptions) -> Iterator[Chunk]:
    for file in table_files(path, declared):
        if file.stat().st_size == 0:
            continue  # an empty part file holds no rows (and no CSV header to read)
        fmt = file_format(file, declared)
        reader = {"parquet": _parquet, "csv": _csv, "jsonl": _jsonl}[fmt]
        yield from _mark_truncated(reader(file, options), file, fmt)


def _parquet(file: Path, options: ReadOptions) -> Iterator[Chunk]:
    """Whole row groups, as many as fit in a chunk: reading batch by batch keeps buffers of
    the groups read so far alive, so resident memory would creep with the file's size. A row
    group larger than a chunk is read batch by batch."""
    reader, row = pq.ParquetFile(file), 0
    for groups in _row_group_runs(reader.metadata, options.chunk_rows):
        if len(groups) == 1 and reader.metadata.row_group(groups[0]).num_rows > options.chunk_rows:
            tables = reader.iter_batches(batch_size=options.chunk_rows, row_groups=groups)
        else:
            tables = [reader.read_row_groups(groups)]
        for table in tables:
            frame = table.to_pandas()
            yield Chunk(frame, file, row)
            row += len(frame)


def _row_group_runs(metadata, chunk_rows: int) -> list[list[int]]:
    """Consecutive row groups packed into runs of at most ``chunk_rows`` rows (a larger group
    runs alone)."""
    runs, rows = [], 0
    for i in range(metadata.num_row_groups):
        n = metadata.row_group(i).num_rows
        if runs and rows + n <= chunk_rows:
            runs[-1].append(i)
            rows += n
        else:
            runs.append([i])
            rows = n
    return runs


def _csv(file: Path, options: ReadOptions) -> Iterator[Chunk]:
    """pandas' C parser, chunk by chunk. A line with more fields than the header stops it; the
    file is then read on from that chunk by pandas' Python parser, which keeps such a line in
    place as an unreadable row (slower, so only where a file has one)."""
    delimiter = "\t" if file.suffix.lower() == ".tsv" else options.delimiter
    header = pd.read_csv(file, sep=delimiter, nrows=0).columns
    text = {c: "str" for c in options.text_columns if c in header}
    row = 0
    try:
        with pd.read_csv(file, sep=delimiter, chunksize=options.chunk_rows, dtype=text,
                         index_col=False) as reader:  # fmt: skip
            for frame in reader:
                yield Chunk(frame.reset_index(drop=True), file, row)
                row += len(frame)
    except pd.errors.ParserError:
        yield from _csv_tolerant(file, options, delimiter, text, row, len(header))


_OVERFULL = "\x00overfull:"


def _csv_tolerant(file: Path, options: ReadOptions, delimiter: str, text: dict, first_row: int,
                  n_fields: int) -> Iterator[Chunk]:  # fmt: skip
    def keep(fields: list[str]) -> list[str]:
        # A placeholder row of the header's width, so rows after it keep their file rows.
        return [f"{_OVERFULL}{len(fields)}"] + [""] * (n_fields - 1)

    row = first_row
    with pd.read_csv(file, sep=delimiter, chunksize=options.chunk_rows, dtype=text,
                     index_col=False, engine="python", on_bad_lines=keep,
                     skiprows=range(1, first_row + 1)) as reader:  # fmt: skip
        for frame in reader:
            frame = frame.reset_index(drop=True)
            marks = frame.iloc[:, 0].astype(str)
            bad = marks.str.startswith(_OVERFULL)
            unreadable = {int(i): f"{marks[i][len(_OVERFULL):]} fields where the header has "
                          f"{n_fields}" for i in np.flatnonzero(bad.to_numpy())}  # fmt: skip
            if unreadable:
                frame.iloc[list(unreadable), 0] = None
            yield Chunk(frame, file, row, unreadable)
            row += len(frame)


def _jsonl(file: Path, options: ReadOptions) -> Iterator[Chunk]:
    row = 0
    with file.open(encoding="utf-8") as handle:
        lines = (line for line in handle if line.strip())
        while batch := list(itertools.islice(lines, options.chunk_rows)):
            yield _json_chunk(batch, file, row, options.text_columns)
            row += len(batch)


def _json_chunk(lines: list[str], file: Path, row: int, text_columns) -> Chunk:
    # Line by line into object columns: a line that does not parse costs only its row, and
    # integers stay exact (a column with a null would otherwise turn 64-bit ids into floats).
    records, unreadable = [], {}
    for i, line in enumerate(lines):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            value, unreadable[i] = {}, f"not JSON: {err.msg} at column {err.colno}"
        if not isinstance(value, dict):
            value, unreadable[i] = {}, "not a JSON object"
        records.append(value)
    frame = pd.DataFrame(records, dtype=object)
    for column in text_columns:
        if column in frame.columns:
            present = frame[column].notna()
            frame.loc[present, column] = frame.loc[present, column].map(str)
    return Chunk(frame, file, row, unreadable)


def _mark_truncated(chunks: Iterator[Chunk], file: Path, fmt: str) -> Iterator[Chunk]:
    """The chunks, the last one with its last row marked when a text file is cut off."""
    previous = None
    for chunk in chunks:
        if previous is not None:
            yield previous
        previous = chunk
    if previous is None:
        return
    if fmt != "parquet" and len(previous.frame) and not _ends_with_newline(file):
        last = len(previous.frame) - 1
        previous = Chunk(previous.frame, file, previous.first_row,
                         {**previous.unreadable, last: TRUNCATED})  # fmt: skip
    yield previous


def _ends_with_newline(file: Path) -> bool:
    with file.open("rb") as handle:
        handle.seek(0, io.SEEK_END)
        if handle.tell() == 0:
            return True
        handle.seek(-1, io.SEEK_END)
        return handle.read(1) == b"\n"
