"""Interpreting raw table columns as their schema kinds, one value at a time.

A column that reaches validation may carry the wrong dtype: ids as text, counts as floats,
junk strings in a numeric column, booleans spelled "true"/"0". Each value is interpreted on
its own (vectorised), so one bad value condemns only its row and the rest of the column
keeps its meaning. A value is *null* when missing in the input and *bad* when present but
not readable as the column's kind; placeholders fill both so that arrays stay aligned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from recsys.data.schema import Kind, TableSchema, pandas_dtype

INVALID_REASON: dict[Kind, str] = {
    "int": "not an integer",
    "float": "not a number",
    "bool": "not a boolean",
}

_INT64_MAX = np.iinfo(np.int64).max
_INT_TEXT = r"[+-]?[0-9]+"
_TRUE_TEXT = ("true", "1", "1.0")
_FALSE_TEXT = ("false", "0", "0.0")


@dataclass(frozen=True)
class ParsedColumn:
    values: np.ndarray  # (N,) int64 / float64 / bool, or a text array; placeholders where absent
    null: np.ndarray  # (N,) bool: missing in the input
    bad: np.ndarray  # (N,) bool: present but not interpretable as the column's kind

    @property
    def present(self) -> np.ndarray:
        return ~self.null & ~self.bad


def parse_table(df: pd.DataFrame, schema: TableSchema) -> dict[str, ParsedColumn]:
    return {c.name: parse_column(df[c.name], c.kind) for c in schema.columns}


def parse_column(series: pd.Series, kind: Kind) -> ParsedColumn:
    null = series.isna().to_numpy(dtype=bool)
    parse = {"int": _parse_int, "float": _parse_float, "bool": _parse_bool, "str": _parse_str}
    values, ok = parse[kind](series)
    return ParsedColumn(values=values, null=null, bad=~null & ~ok)


def _is_number_dtype(series: pd.Series) -> bool:
    return pdt.is_numeric_dtype(series.dtype) and not pdt.is_bool_dtype(series.dtype)


def _as_text(series: pd.Series) -> pd.Series:
    """Every non-null value as stripped text (nulls stay null), whatever the dtype."""
    return series.astype(object).astype("str").str.strip()


def _parse_int(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if pdt.is_integer_dtype(series.dtype) and not pdt.is_bool_dtype(series.dtype):
        if pdt.is_unsigned_integer_dtype(series.dtype):
            raw = series.to_numpy(dtype=np.uint64, na_value=0)
            ok = raw <= _INT64_MAX
            return np.where(ok, raw, 0).astype(np.int64), ok
        return series.to_numpy(dtype=np.int64, na_value=0), np.ones(len(series), dtype=bool)
    if _is_number_dtype(series):
        return _int_from_float(series.to_numpy(dtype=np.float64, na_value=np.nan))
    if pdt.is_bool_dtype(series.dtype):
        return np.zeros(len(series), dtype=np.int64), np.zeros(len(series), dtype=bool)
    return _int_from_text(_as_text(series))


def _int_from_float(floats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(floats) & (floats == np.trunc(floats)) & (np.abs(floats) < 2.0**63)
    return np.where(ok, floats, 0).astype(np.int64), ok


def _int_from_text(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer text parses exactly (ids beyond 2**53 keep every digit); '3.0' or '1e3' also read."""
    values = np.zeros(len(text), dtype=np.int64)
    ok = np.zeros(len(text), dtype=bool)
    exact = text.str.fullmatch(_INT_TEXT).fillna(False).to_numpy(dtype=bool)
    if exact.any():
        values[exact], ok[exact] = _exact_ints(text[exact])
    rest = ~exact & text.notna().to_numpy(dtype=bool)
    if rest.any():
        floats = pd.to_numeric(text[rest], errors="coerce").to_numpy(dtype=np.float64)
        values[rest], ok[rest] = _int_from_float(floats)
    return values, ok


def _exact_ints(text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.dtype == np.int64:
        return numbers.to_numpy(), np.ones(len(text), dtype=bool)
    # Only reached when some value overflows int64: read each one exactly to find which.
    big = np.array([int(t) for t in text], dtype=object)
    ok = (big >= -_INT64_MAX - 1) & (big <= _INT64_MAX)
    return np.where(ok, big, 0).astype(np.int64), ok.astype(bool)


def _parse_float(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if _is_number_dtype(series):
        floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
    elif pdt.is_bool_dtype(series.dtype):
        return np.zeros(len(series)), np.zeros(len(series), dtype=bool)
    else:
        floats = pd.to_numeric(_as_text(series), errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(floats)
    return np.where(ok, floats, 0.0), ok


def _parse_bool(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if pdt.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=bool, na_value=False), np.ones(len(series), dtype=bool)
    if _is_number_dtype(series):
        floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return floats == 1.0, (floats == 0.0) | (floats == 1.0)
    text = _as_text(series).str.lower()
    is_true = text.isin(_TRUE_TEXT).to_numpy(dtype=bool)
    return is_true, is_true | text.isin(_FALSE_TEXT).to_numpy(dtype=bool)


def _parse_str(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    # Any value has a text form, so numbers in a text column are read as their text ("5").
    # Text stays in its own array (Arrow-backed, not a million Python strings); checks read it
    # through pandas, and take Python strings only for the rows they report.
    text = series if series.dtype == "str" else series.astype(object).astype("str")
    return text.array, np.ones(len(series), dtype=bool)


def clean_column(raw: pd.Series, parsed: ParsedColumn, keep: np.ndarray, dtype: str) -> pd.Series:
    """The kept values in the schema dtype (raw values are reused when already stored so)."""
    if str(raw.dtype) == dtype:
        return raw.reset_index(drop=True) if keep.all() else raw[keep].reset_index(drop=True)
    values, null = parsed.values[keep], parsed.null[keep]
    if dtype == "Int64":
        return pd.Series(pd.arrays.IntegerArray(values, null))
    if dtype == "boolean":
        return pd.Series(pd.arrays.BooleanArray(values, null))
    if dtype == "float64":
        return pd.Series(np.where(null, np.nan, values))
    if dtype == "str":
        return pd.Series(values, dtype="str")  # text arrays hold missing values as missing
    return pd.Series(values.astype(dtype))


def clean_frame(
    raw: pd.DataFrame, parsed: dict[str, ParsedColumn], keep: np.ndarray, schema: TableSchema
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            c.name: clean_column(raw[c.name], parsed[c.name], keep, pandas_dtype(c))
            for c in schema.columns
        }
    )
