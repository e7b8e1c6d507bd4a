"""Small builders for ``ItemFeatures`` columns: category codes, bags of tokens, value bands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def scatter(index: np.ndarray, values: np.ndarray, n_rows: int, fill, dtype) -> np.ndarray:
    """(n_rows,) array with ``values`` at ``index`` and ``fill`` elsewhere."""
    out = np.full(n_rows, fill, dtype=dtype)
    out[index] = values
    return out


def category_codes(values: pd.Series) -> np.ndarray:
    """int64 codes 1..K in sorted order of the distinct values; missing values get 0."""
    codes, _ = pd.factorize(values, sort=True, use_na_sentinel=True)
    return codes.astype(np.int64) + 1


def quantile_bands(values: np.ndarray, n_bands: int) -> np.ndarray:
    """int64 band 1..n_bands by quantile of the finite values; NaN gets 0."""
    finite = np.isfinite(values)
    bands = np.zeros(len(values), dtype=np.int64)
    if finite.any():
        edges = np.quantile(values[finite], np.linspace(0, 1, n_bands + 1)[1:-1])
        bands[finite] = np.searchsorted(edges, values[finite], side="right") + 1
    return bands


def token_matrix(
    text: pd.Series, index: np.ndarray, n_rows: int
) -> tuple[sp.csr_matrix, tuple[str, ...]]:
    """Binary (n_rows, n_tokens) bag of the space-separated tokens of each text, at ``index``.

    Token columns follow the sorted token names; missing or empty texts give empty rows.
    """
    text = pd.Series(text.to_numpy(dtype=object), index=np.arange(len(text)))
    exploded = text.fillna("").astype(str).str.split().explode().dropna()
    row_pos = exploded.index.to_numpy(dtype=np.int64)
    names, codes = np.unique(exploded.to_numpy(dtype=str), return_inverse=True)
    data = np.ones(len(codes), dtype=np.float32)
    rows = np.asarray(index, dtype=np.int64)[row_pos]
    m = sp.csr_matrix((data, (rows, codes)), shape=(n_rows, len(names)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m, tuple(str(n) for n in names)
