"""Removing users from in-memory objects: what a pickle or a JSON document holds.

``scrub(obj, ids)`` returns the object without the forgotten users and how many entries went:

* a data frame loses the rows whose ``user_id`` column (or index named so) is forgotten;
* an object (dataclass, plain class) with a ``user_id`` array loses those rows from every array
  attribute of the same length (``Features``: ids with their feature matrix);
* a dict loses the entries keyed by a forgotten id (an int, or its decimal string in JSON);
* a list, tuple or set loses the items equal to a forgotten id, the records (dicts) whose
  ``user_id`` is one and the tuples holding one; everything else is walked into.

Objects are changed in place where they are mutable (frozen dataclasses too: the walk owns the
unpickled copy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

USER_KEY = "user_id"
_LEAVES = (str, bytes, int, float, bool, type(None), np.generic)


def _is_forgotten(value, ids: np.ndarray) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return bool(np.isin(int(value), ids))
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return bool(np.isin(int(value), ids)) if int(value) < 2**63 else False
    return False


def _frame(df: pd.DataFrame, ids: np.ndarray) -> tuple[pd.DataFrame, int]:
    hit = np.zeros(len(df), dtype=bool)
    if USER_KEY in df.columns:
        hit |= np.isin(pd.to_numeric(df[USER_KEY], errors="coerce").to_numpy(), ids)
    if df.index.name == USER_KEY:
        hit |= np.isin(df.index.to_numpy(), ids)
    return (df.loc[~hit], int(hit.sum())) if hit.any() else (df, 0)


def _aligned(obj, ids: np.ndarray) -> int:
    """Rows of a forgotten user out of every array attribute aligned with ``obj.user_id``."""
    users = np.asarray(getattr(obj, USER_KEY))
    hit = np.isin(users, ids)
    if not hit.any():
        return 0
    for name, value in list(vars(obj).items()):
        if isinstance(value, np.ndarray) and value.ndim and len(value) == len(users):
            object.__setattr__(obj, name, value[~hit])
    return int(hit.sum())


def _names_one(item, ids: np.ndarray) -> bool:
    """An id itself, a record (dict) of one, or a tuple holding one (e.g. (user, product))."""
    if isinstance(item, dict):
        return _is_forgotten(item.get(USER_KEY), ids)
    if isinstance(item, tuple):
        return any(_is_forgotten(x, ids) for x in item)
    return _is_forgotten(item, ids)


def _sequence(items, ids: np.ndarray) -> tuple[list, int]:
    out, removed = [], 0
    for item in items:
        if _names_one(item, ids):
            removed += 1
            continue
        item, n = scrub(item, ids)
        out.append(item)
        removed += n
    return out, removed


def scrub(obj, ids: np.ndarray, _seen: set | None = None) -> tuple[object, int]:
    """``obj`` without the users ``ids``, and how many entries were removed."""
    seen = set() if _seen is None else _seen
    if isinstance(obj, _LEAVES) or id(obj) in seen:
        return obj, 0
    seen.add(id(obj))
    if isinstance(obj, pd.DataFrame):
        return _frame(obj, ids)
    if isinstance(obj, np.ndarray):
        return obj, 0  # an array alone says nothing of which rows are whose
    if isinstance(obj, dict):
        removed = 0
        for key in [k for k in obj if _is_forgotten(k, ids)]:
            del obj[key]
            removed += 1
        for key, value in obj.items():
            obj[key], n = scrub(value, ids, seen)
            removed += n
        return obj, removed
    if isinstance(obj, (list, tuple)):
        items, removed = _sequence(obj, ids)
        return (type(obj)(items) if isinstance(obj, tuple) else items), removed
    if isinstance(obj, set):
        kept = {v for v in obj if not _names_one(v, ids)}
        return kept, len(obj) - len(kept)
    if not hasattr(obj, "__dict__"):
        return obj, 0
    removed = _aligned(obj, ids) if isinstance(getattr(obj, USER_KEY, None), np.ndarray) else 0
    for name, value in list(vars(obj).items()):
        new, n = scrub(value, ids, seen)
        if n:
            object.__setattr__(obj, name, new)
            removed += n
    return obj, removed
