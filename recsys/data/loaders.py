"""Readers for the plain-text layouts of public sequential-recommendation datasets.

* ``user item`` per line (BERT4Rec's and SASRec's files): one interaction per line, grouped by
  user and chronological within a user, so the file line number is the order key.
* One line per user: ``<user> <item> <item> ...`` (S3-Rec), or items only with the user id
  being the line number from 1 (gSASRec's ml-1m). The order key is the token's position in the
  file.
* RecBole atomic files (see ``recsys.data.recbole``).

Every reader is vectorised: the file is split into integer tokens once, and the line and field
of each token are recovered from the byte positions of token starts and newlines. Anything that
is not a plain non-negative integer, a line with the wrong number of fields and an empty line all
raise ``DataFormatError`` naming the file, the line and the field; nothing is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.interactions import Interactions
from recsys.data.vocab import Vocab

# bytes.split() splits on exactly these.
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True
_MAX_DIGITS = 18  # every 18-digit number fits in int64


class DataFormatError(ValueError):
    """A data file does not follow its format; names the file, line (1-based) and field."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, problem: str):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.field = str(path), line, field


@dataclass(frozen=True)
class IntTokens:
    """The whitespace-separated integers of a text file, with where each one came from."""

    values: np.ndarray  # (T,) int64
    line: np.ndarray  # (T,) int64 1-based line number of each token
    field: np.ndarray  # (T,) int64 0-based position of the token within its line
    per_line: np.ndarray  # (n_lines,) int64 tokens on each line
    path: Path

    def first_line_where(self, mask: np.ndarray) -> int:
        """1-based number of the first line flagged in a per-line mask."""
        return int(np.flatnonzero(mask)[0]) + 1


def read_int_tokens(path: str | Path) -> IntTokens:
    """Split a file into integer tokens; reject empty files, empty lines and non-integers."""
    path = Path(path)
    data = path.read_bytes()
    raw = np.array(data.split(), dtype=bytes)  # (T,) fixed-width byte strings
    if raw.size == 0:
        raise DataFormatError(path, None, None, "file has no data")
    buf = np.frombuffer(data, dtype=np.uint8)
    is_ws = _WHITESPACE[buf]
    starts = np.flatnonzero(~is_ws & np.concatenate(([True], is_ws[:-1])))
    newlines = np.flatnonzero(buf == ord("\n"))
    n_lines = len(newlines) + int(buf[-1] != ord("\n"))
    line = np.searchsorted(newlines, starts) + 1
    field = np.arange(len(raw)) - np.searchsorted(line, line)
    per_line = np.bincount(line - 1, minlength=n_lines)
    if np.any(per_line == 0):
        lineno = int(np.flatnonzero(per_line == 0)[0]) + 1
        raise DataFormatError(path, lineno, None, "empty line")
    _check_integers(raw, line, field, path)
    return IntTokens(raw.astype(np.int64), line, field, per_line, path)


def _check_integers(raw: np.ndarray, line: np.ndarray, field: np.ndarray, path: Path) -> None:
    bad = ~np.strings.isdigit(raw) | (np.strings.str_len(raw) > _MAX_DIGITS)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        token = raw[i].decode(errors="replace")
        raise DataFormatError(
            path,
            int(line[i]),
            f"#{field[i] + 1}",
            f"expected a non-negative integer, got {token!r}",
        )


def encode_interactions(
    user_raw: np.ndarray, item_raw: np.ndarray, ts: np.ndarray, *, name: str
) -> Interactions:
    """Interactions with user and item vocabularies built over the raw ids given."""
    user_vocab = Vocab.build("user", user_raw)
    item_vocab = Vocab.build("item", item_raw)
    return Interactions(
        user=user_vocab.encode(user_raw),
        item=item_vocab.encode(item_raw),
        ts=np.asarray(ts, dtype=np.int64),
        user_vocab=user_vocab,
        item_vocab=item_vocab,
        name=name,
    )


def read_user_item_lines(path: str | Path, *, name: str | None = None) -> Interactions:
    """``<user> <item>`` per line; the 1-based line number is the order key (``ts``)."""
    tokens = read_int_tokens(path)
    wrong = tokens.per_line != 2
    if np.any(wrong):
        lineno = tokens.first_line_where(wrong)
        got = int(tokens.per_line[lineno - 1])
        field = "item" if got < 2 else f"#{got}"
        raise DataFormatError(tokens.path, lineno, field, f"expected 2 fields, got {got}")
    user_raw, item_raw = tokens.values[0::2], tokens.values[1::2]
    return encode_interactions(user_raw, item_raw, tokens.line[0::2], name=name or Path(path).stem)


def read_user_sequences(
    path: str | Path, *, user_ids: bool = True, name: str | None = None
) -> Interactions:
    """One line per user, items oldest first; the order key is the token position in the file.

    With ``user_ids`` each line starts with the user id (``<user> <item> ...``); without, the
    line holds items only and the user id is the line number starting at 1.
    """
    tokens = read_int_tokens(path)
    is_user = tokens.field == 0 if user_ids else np.zeros(len(tokens.values), dtype=bool)
    too_short = tokens.per_line < (2 if user_ids else 1)
    if np.any(too_short):
        lineno = tokens.first_line_where(too_short)
        raise DataFormatError(tokens.path, lineno, "item_1", "a user line needs at least one item")
    if user_ids:
        line_user = tokens.values[is_user]  # (n_lines,) one id per line
        _check_unique_users(line_user, tokens.path)
    else:
        line_user = np.arange(1, len(tokens.per_line) + 1, dtype=np.int64)
    item_line = tokens.line[~is_user]
    user_raw = line_user[item_line - 1]
    order = np.flatnonzero(~is_user)
    return encode_interactions(
        user_raw, tokens.values[~is_user], order, name=name or Path(path).stem
    )


def _check_unique_users(line_user: np.ndarray, path: Path) -> None:
    order = np.argsort(line_user, kind="stable")
    dup = np.flatnonzero(line_user[order][1:] == line_user[order][:-1])
    if len(dup):
        first, again = sorted((int(order[dup[0]]) + 1, int(order[dup[0] + 1]) + 1))
        raise DataFormatError(
            path, again, "user", f"user {line_user[first - 1]} already has line {first}"
        )


def read_interaction_table(
    path: str | Path,
    *,
    name: str | None = None,
    user: str = "user",
    item: str = "item",
    time: str | None = "time",
) -> tuple[Interactions, bool]:
    """A table of interactions (CSV, TSV, Parquet or JSON Lines, by suffix) and whether it has
    times. Integer ids are kept; text ids (e.g. ASINs) are numbered in sorted text order.
    ``time`` (Unix seconds, or date-time text) may be absent: file order is the order key."""
    path = Path(path)
    frame = _read_any_table(path)
    line = 2 if path.suffix.lower() in (".csv", ".tsv") else 1  # file line of row 0 (a header)
    for role, column in (("user", user), ("item", item)):
        if column not in frame.columns:
            found = [str(c) for c in frame.columns]
            raise DataFormatError(path, None, column, f"no {role} column in {found} "
                                  f"(set columns.{role})")  # fmt: skip
    missing = frame[[user, item]].isna().any(axis=1).to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataFormatError(path, row + line, user if pd.isna(frame[user].iloc[row]) else item,
                              "missing id")  # fmt: skip
    timed = time is not None and time in frame.columns
    ts = _times(frame[time], path, time, line) if timed else np.arange(len(frame), dtype=np.int64)
    return encode_interactions(_int_ids(frame[user]), _int_ids(frame[item]), ts,
                               name=name or path.stem), timed  # fmt: skip


def _read_any_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=True, dtype=False)
    return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")


def _int_ids(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.to_numpy(np.int64)
    codes, _ = pd.factorize(column.astype(str), sort=True)
    return codes.astype(np.int64)


def _times(column: pd.Series, path: Path, name: str, line: int) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column.dtype) and not column.isna().any():
        return column.to_numpy(np.int64)
    stamps = pd.to_datetime(column, utc=True, errors="coerce")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise DataFormatError(path, row + line, name, f"not a time: {column.iloc[row]!r}")
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
