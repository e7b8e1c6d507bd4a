"""k-anonymous exports: cohorts and segments leave the library only in groups of >= k users.

A released row stands for a group of users who share every *quasi-identifier* (age band,
gender, region: values that, joined with other data, single people out) and the cohort or
segment being exported. ``k_anonymous`` makes every such group hold at least ``k`` users:

1. **generalisation**, greedy like Datafly: while more than ``max_suppressed`` of the users sit
   in groups smaller than k, the quasi-identifier with the most distinct values moves one
   level up its hierarchy (``18-24`` -> ``18-34`` -> ``*``; ``华南`` -> ``南方`` -> ``*``);
   the last level of every hierarchy is ``*`` (the column says nothing);
2. **suppression** of the users still in groups smaller than k: they are not released, and the
   report counts them.

``export_groups`` then writes one row per released group with its size; ``min_group_size`` is
the audit (the smallest group over given columns). Every step is in ``KAnonReport``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ANY = "*"


@dataclass(frozen=True)
class QuasiIdentifier:
    """A column and its generalisation levels above the raw values: each level maps the
    previous level's labels to coarser ones (a label missing from a map stays as it is), or is
    a bin width for the raw numbers (``10``: 23 -> ``20-29``; widths come before maps, each
    wider than the last). ``*`` always follows the last level."""

    column: str
    levels: tuple[Mapping[str, str] | float, ...] = ()

    @property
    def n_levels(self) -> int:
        return len(self.levels) + 2  # raw, each level, "*"

    def generalise(self, values: pd.Series, level: int) -> pd.Series:
        if level >= self.n_levels - 1:
            return pd.Series(ANY, index=values.index, dtype=object)
        out = values
        for step in self.levels[:level]:  # a width bins the raw values, a map the labels so far
            out = _bin(values, float(step)) if isinstance(step, (int, float)) else _map(out, step)
        return out.astype(str).astype(object)


def _bin(values: pd.Series, width: float) -> pd.Series:
    low = np.floor(pd.to_numeric(values) / width) * width
    fmt = "{:g}-{:g}".format
    return pd.Series(
        [fmt(a, a + width - (1 if width >= 1 else 0)) for a in low], index=values.index
    )


def _map(values: pd.Series, mapping: Mapping[str, str]) -> pd.Series:
    text = values.astype(str)
    return text.map(lambda v: mapping.get(v, v))


@dataclass(frozen=True)
class KAnonReport:
    k: int
    quasi_identifiers: tuple[str, ...]
    levels: dict[str, int]  # chosen level per quasi-identifier (0: raw, n-1: "*")
    users_in: int
    users_released: int
    users_suppressed: int
    groups_released: int
    groups_suppressed: int
    min_group_size: int | None  # None when nothing is released
    steps: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lv = ", ".join(f"{c} level {n}" for c, n in self.levels.items())
        return (
            f"k={self.k}: {self.groups_released} groups of >= {self.min_group_size} users released "
            f"({self.users_released} of {self.users_in} users); {self.users_suppressed} users in "
            f"{self.groups_suppressed} smaller groups suppressed; {lv}"
        )


def min_group_size(frame: pd.DataFrame, columns: Sequence[str]) -> int | None:
    """The audit: the smallest group of rows sharing ``columns`` (None for no rows)."""
    if len(frame) == 0:
        return None
    return int(frame.groupby(list(columns), dropna=False, observed=True).size().min())


def _generalised(frame: pd.DataFrame, qis: Sequence[QuasiIdentifier], levels: dict) -> pd.DataFrame:
    out = frame.copy()
    for qi in qis:
        out[qi.column] = qi.generalise(frame[qi.column], levels[qi.column])
    return out


def _group_sizes(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Each row's group size over ``keys``."""
    return frame.groupby(keys, dropna=False, observed=True)[keys[0]].transform("size")


def k_anonymous(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[QuasiIdentifier],
    *,
    k: int = 50,
    group_by: Sequence[str] = (),
    max_suppressed: float = 0.05,
) -> tuple[pd.DataFrame, KAnonReport]:
    """One row per user in, the released rows (quasi-identifiers generalised, small groups
    removed) out; groups are the rows sharing ``group_by`` (the cohort) and every
    quasi-identifier. Generalisation stops once at most ``max_suppressed`` of the users would
    be suppressed, or every quasi-identifier is ``*``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    keys = [*group_by, *(q.column for q in quasi_identifiers)]
    missing = [c for c in keys if c not in frame]
    if missing or not keys:
        raise ValueError(f"k-anonymous export: columns {missing or 'none'} to group by")
    levels = {q.column: 0 for q in quasi_identifiers}
    steps: list[str] = []
    while True:
        current = _generalised(frame, quasi_identifiers, levels)
        small = (_group_sizes(current, keys) < k).to_numpy()
        share = float(small.mean()) if len(frame) else 0.0
        movable = [q for q in quasi_identifiers if levels[q.column] < q.n_levels - 1]
        if share <= max_suppressed or not movable:
            break
        widest = max(movable, key=lambda q: current[q.column].nunique())
        levels[widest.column] += 1
        steps.append(f"{share:.1%} of users in groups < {k}: {widest.column} -> level "
                     f"{levels[widest.column]}")  # fmt: skip
    released = current.loc[~small].reset_index(drop=True)
    report = KAnonReport(
        k=k, quasi_identifiers=tuple(q.column for q in quasi_identifiers), levels=levels,
        users_in=len(frame), users_released=len(released), users_suppressed=int(small.sum()),
        groups_released=_n_groups(released, keys),
        groups_suppressed=_n_groups(current[small], keys),
        min_group_size=min_group_size(released, keys), steps=steps,
    )  # fmt: skip
    return released, report


def _n_groups(frame: pd.DataFrame, keys: list[str]) -> int:
    return frame.groupby(keys, dropna=False, observed=True).ngroups if len(frame) else 0


def export_groups(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[QuasiIdentifier],
    *,
    k: int = 50,
    group_by: Sequence[str] = (),
    max_suppressed: float = 0.05,
) -> tuple[pd.DataFrame, KAnonReport]:
    """The only way groups leave: one row per released group (``group_by``, generalised
    quasi-identifiers, ``users``), each with ``users >= k``, and the report."""
    released, report = k_anonymous(frame, quasi_identifiers, k=k, group_by=group_by,
                                   max_suppressed=max_suppressed)  # fmt: skip
    keys = [*group_by, *(q.column for q in quasi_identifiers)]
    table = released.groupby(keys, dropna=False, observed=True).size().rename("users")
    table = table.reset_index().sort_values(keys, kind="stable", ignore_index=True)
    if len(table) and int(table["users"].min()) < k:  # the guarantee, checked on what leaves
        raise RuntimeError(f"k-anonymous export would release a group of {table['users'].min()}")
    return table, report


def quasi_identifiers(spec: Mapping[str, Sequence]) -> list[QuasiIdentifier]:
    """``{column: [level, ...]}`` (a level is a mapping or a bin width) as quasi-identifiers."""
    out = []
    for column, levels in spec.items():
        for i, level in enumerate(levels or ()):
            if not isinstance(level, (Mapping, int, float)) or isinstance(level, bool):
                raise ValueError(f"quasi-identifier {column}: level {i + 1} must be a mapping "
                                 f"or a bin width, got {level!r}")  # fmt: skip
        out.append(QuasiIdentifier(str(column), tuple(levels or ())))
    return out


def export_cohorts(
    tags: pd.DataFrame,
    users: pd.DataFrame,
    qis: Sequence[QuasiIdentifier],
    *,
    k: int = 50,
    max_suppressed: float = 0.05,
) -> tuple[pd.DataFrame, KAnonReport, list[str]]:
    """Cohort and segment sizes (``tag_id`` per row of the tag table) by the users' generalised
    quasi-identifiers, every row >= k viewers; and the declared quasi-identifiers the users
    table lacks (a platform's own tables may hold no demographics)."""
    present = [q for q in qis if q.column in users.columns]
    absent = [q.column for q in qis if q.column not in users.columns]
    columns = ["user_id", *(q.column for q in present)]
    frame = tags[["user_id", "tag_id"]].drop_duplicates().merge(users[columns], on="user_id")
    table, report = export_groups(frame.drop(columns="user_id"), present, k=k,
                                  group_by=("tag_id",), max_suppressed=max_suppressed)  # fmt: skip
    return table, report, absent
