"""Reader for RecBole atomic files (``.inter``, ``.user``, ``.item``), with ml-100k side data.

An atomic file is tab-separated with a header of ``name:type`` fields, type one of ``token``,
``token_seq`` (space-separated tokens), ``float`` and ``float_seq``. Every line must have exactly
as many fields as the header; ids must be non-negative integers and timestamps whole numbers.

Interactions keep file order and are sorted per user by timestamp later
(``Interactions.sequences`` breaks ties by file order). Items get side information aligned with
item indices: a categorical release-decade bucket, the numeric release year, and the genres
(``class``) as tokens; a release year that is not a number (ml-100k has ``unkonwn`` and ``V``)
is recorded as missing, not rejected, because the field is a free token.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.features import token_matrix
from recsys.data.interactions import Interactions, ItemFeatures
from recsys.data.loaders import DataFormatError, encode_interactions
from recsys.data.vocab import Vocab

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


@dataclass(frozen=True)
class RecboleData:
    interactions: Interactions
    item_features: ItemFeatures | None
    user_features: pd.DataFrame | None  # indexed by user index


def read_atomic(path: str | Path) -> pd.DataFrame:
    """One atomic file as text columns named by the header; ``df.attrs['types']`` holds types."""
    path = Path(path)
    data = path.read_bytes()
    header, _, _ = data.partition(b"\n")
    names, types = _parse_header(header.decode().rstrip("\r"), path)
    _check_field_counts(data, len(names), path)
    df = pd.read_csv(
        io.BytesIO(data),
        sep="\t",
        header=0,
        names=names,
        dtype=str,
        quoting=csv.QUOTE_NONE,
        na_filter=False,
        skip_blank_lines=False,
    )
    df.attrs.update(types=dict(zip(names, types, strict=True)), path=str(path))
    return df


def _parse_header(header: str, path: Path) -> tuple[list[str], list[str]]:
    names, types = [], []
    for i, spec in enumerate(header.split("\t")):
        name, sep, kind = spec.partition(":")
        if not sep or kind not in FIELD_TYPES:
            problem = f"header field {i + 1} {spec!r} is not name:type with type in {FIELD_TYPES}"
            raise DataFormatError(path, 1, None, problem)
        names.append(name)
        types.append(kind)
    return names, types


def _check_field_counts(data: bytes, n_fields: int, path: Path) -> None:
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == ord("\n"))
    n_lines = len(newlines) + int(len(buf) > 0 and buf[-1] != ord("\n"))
    tabs = np.flatnonzero(buf == ord("\t"))
    per_line = np.bincount(np.searchsorted(newlines, tabs), minlength=n_lines) + 1
    wrong = per_line != n_fields
    if np.any(wrong):
        lineno = int(np.flatnonzero(wrong)[0]) + 1
        got = int(per_line[lineno - 1])
        raise DataFormatError(path, lineno, None, f"expected {n_fields} fields, got {got}")


def int_column(df: pd.DataFrame, field: str) -> np.ndarray:
    """A column of non-negative integer tokens as int64; errors name the file line."""
    text = _column(df, field)
    ok = text.str.fullmatch(r"\d{1,18}").to_numpy(dtype=bool)
    if not ok.all():
        _raise_bad_value(df, field, ok, "a non-negative integer")
    return text.astype(np.int64).to_numpy()


def whole_number_column(df: pd.DataFrame, field: str) -> np.ndarray:
    """A float column whose values must be whole numbers (e.g. Unix-second timestamps)."""
    values = pd.to_numeric(_column(df, field), errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2**62)
    if not ok.all():
        _raise_bad_value(df, field, ok, "a whole number")
    return values.astype(np.int64)


def _column(df: pd.DataFrame, field: str) -> pd.Series:
    if field not in df.columns:
        raise DataFormatError(df.attrs.get("path", "?"), 1, field, "field missing from header")
    return df[field]


def _raise_bad_value(df: pd.DataFrame, field: str, ok: np.ndarray, expected: str) -> None:
    row = int(np.flatnonzero(~ok)[0])
    value = df[field].iloc[row]
    # Line 1 is the header, so data row r sits on line r + 2.
    raise DataFormatError(df.attrs["path"], row + 2, field, f"expected {expected}, got {value!r}")


def read_recbole(folder: str | Path, dataset: str, *, name: str | None = None) -> RecboleData:
    """``<folder>/<dataset>.inter`` plus the ``.item`` and ``.user`` files when present."""
    folder = Path(folder)
    inter = read_atomic(folder / f"{dataset}.inter")
    user_raw, item_raw = int_column(inter, "user_id"), int_column(inter, "item_id")
    if "timestamp" in inter.columns:
        ts = whole_number_column(inter, "timestamp")
    else:
        ts = np.arange(len(inter), dtype=np.int64)
    interactions = encode_interactions(user_raw, item_raw, ts, name=name or dataset)
    item_path, user_path = folder / f"{dataset}.item", folder / f"{dataset}.user"
    items = (
        item_features(read_atomic(item_path), interactions.item_vocab)
        if item_path.exists()
        else None
    )
    users = (
        user_features(read_atomic(user_path), interactions.user_vocab)
        if user_path.exists()
        else None
    )
    return RecboleData(interactions, items, users)


def _rows_in_vocab(df: pd.DataFrame, id_field: str, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """(row positions, vocab indices) of the rows whose id is in the vocabulary."""
    raw = int_column(df, id_field)
    _check_unique(df, id_field, raw)
    index = vocab.encode(raw)
    rows = np.flatnonzero(index >= 2)
    return rows, index[rows]


def _check_unique(df: pd.DataFrame, field: str, raw: np.ndarray) -> None:
    dup = pd.Series(raw).duplicated().to_numpy()
    if dup.any():
        _raise_bad_value(df, field, ~dup, "an id not listed before")


def item_features(
    items: pd.DataFrame,
    vocab: Vocab,
    *,
    year_field: str = "release_year",
    genre_field: str = "class",
) -> ItemFeatures:
    """Release-decade bucket, release year and genre tokens, row i for item index i.

    Items of the vocabulary without a row keep the missing values (category 0, NaN, no token);
    rows for items that never occur in the interactions have no index and are not used.
    """
    rows, index = _rows_in_vocab(items, "item_id", vocab)
    year = np.full(len(vocab), np.nan, dtype=np.float32)
    year[index] = pd.to_numeric(items[year_field].iloc[rows], errors="coerce").to_numpy()
    decade = np.floor(year / 10) * 10
    known = np.isfinite(decade)
    bucket = np.zeros(len(vocab), dtype=np.int64)
    bucket[known] = np.searchsorted(np.unique(decade[known]), decade[known]) + 1
    tokens, names = token_matrix(items[genre_field].iloc[rows], index, len(vocab))
    return ItemFeatures(
        categorical={"release_decade": bucket},
        numeric={"release_year": year},
        tokens=tokens,
        token_names=names,
    )


def user_features(users: pd.DataFrame, vocab: Vocab) -> pd.DataFrame:
    """Users' side columns (ages as integers), indexed by user index, for users in the vocab."""
    rows, index = _rows_in_vocab(users, "user_id", vocab)
    out = users.iloc[rows].drop(columns="user_id").reset_index(drop=True)
    if "age" in out.columns:
        out["age"] = int_column(users, "age")[rows]
    out.index = pd.Index(index, name="user")
    return out.sort_index()
