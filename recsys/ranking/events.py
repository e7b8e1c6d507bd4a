"""Session events in the two shapes the session code reads: one at a time, or as columns.

Online, a service receives ``SessionEvent`` objects; offline, ``event_columns`` turns a logged
events table into plain columns in replay order. Both reduce an event to the same fields (user,
type code, time, session, streamer, product, and one number whose meaning depends on the type,
``VALUE_FIELD``), so the state update that follows is one function for both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.data.schema import EVENT_REQUIREMENTS, EVENT_TYPES

NO_ID = -1
EVENT_CODE: dict[str, int] = {name: code for code, name in enumerate(EVENT_TYPES)}
# The one number an event type carries into session state (others carry none: NaN).
VALUE_FIELD: dict[str, str] = {
    "leave": "dwell_s",
    "purchase": "amount",
    "refund": "amount",
    "coupon_claim": "coupon_value",
}


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One viewer event with raw ids; absent ids are ``NO_ID``, an absent value NaN."""

    ts: int
    user: int
    event_type: str
    session: int = NO_ID
    streamer: int = NO_ID
    product: int = NO_ID
    value: float = math.nan

    def __post_init__(self) -> None:
        if self.event_type not in EVENT_CODE:
            raise ValueError(
                f"unknown event_type {self.event_type!r}; expected one of {list(EVENT_TYPES)}"
            )

    @property
    def code(self) -> int:
        return EVENT_CODE[self.event_type]

    @classmethod
    def from_record(cls, record: dict) -> SessionEvent:
        """From a mapping with the events table's field names (``user_id``, ``product_id``...)."""
        kind = record["event_type"]
        value_field = VALUE_FIELD.get(kind)
        value = record.get(value_field) if value_field else None
        return cls(
            ts=int(record["ts"]),
            user=int(record["user_id"]),
            event_type=kind,
            session=_id(record.get("session_id")),
            streamer=_id(record.get("streamer_id")),
            product=_id(record.get("product_id")),
            value=math.nan if value is None else float(value),
        )


def _id(value) -> int:
    return NO_ID if value is None or pd.isna(value) else int(value)


@dataclass(frozen=True)
class EventColumns:
    """Events as Python lists in replay order (lists: the replay loop reads them one by one)."""

    ts: np.ndarray  # (N,) int64, non-decreasing
    ts_list: list[int]  # the same times as Python ints
    user: list[int]
    code: list[int]
    session: list[int]
    streamer: list[int]
    product: list[int]
    value: list[float]

    def __len__(self) -> int:
        return len(self.ts)


def id_column(frame: pd.DataFrame, field: str) -> np.ndarray:
    """A frame's id column as int64, ``NO_ID`` where missing (or where the column is absent)."""
    if field not in frame.columns:
        return np.full(len(frame), NO_ID, dtype=np.int64)
    column = frame[field]
    if column.dtype == np.int64:  # no missing ids: skip the nullable round trip
        return column.to_numpy()
    return column.astype("Int64").fillna(NO_ID).to_numpy(np.int64)


def _value_column(events: pd.DataFrame, kind: np.ndarray) -> np.ndarray:
    value = np.full(len(events), np.nan)
    for name, field in VALUE_FIELD.items():
        if field in events.columns:
            rows = kind == name
            value[rows] = events.loc[rows, field].to_numpy(np.float64)
    return value


def _check_types(events: pd.DataFrame, kind: np.ndarray) -> None:
    bad = ~np.isin(kind, np.asarray(EVENT_TYPES, dtype=object))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"table 'events', event_id {events['event_id'].iloc[i]}: unknown event_type "
            f"{kind[i]!r}; expected one of {list(EVENT_TYPES)}"
        )


def _check_requirements(events: pd.DataFrame, kind: np.ndarray, ids: dict) -> None:
    """A room event without its room, or a product event without its product, would be
    silently meaningless to the session: reject it, naming the row."""
    for name, fields in EVENT_REQUIREMENTS.items():
        rows = kind == name
        for field in fields:
            if field in ids and np.any(rows & (ids[field] == NO_ID)):
                i = int(np.flatnonzero(rows & (ids[field] == NO_ID))[0])
                raise ValueError(
                    f"table 'events', event_id {events['event_id'].iloc[i]} ({name}): "
                    f"field {field!r} is required and missing"
                )


def event_columns(events: pd.DataFrame) -> EventColumns:
    """The events table as replay columns, sorted by (ts, event_id)."""
    missing = [c for c in ("event_id", "ts", "user_id", "event_type") if c not in events.columns]
    if missing:
        raise ValueError(f"table 'events': missing columns {missing}")
    events = events.sort_values(["ts", "event_id"], kind="stable")
    kind = events["event_type"].to_numpy(dtype=object)
    _check_types(events, kind)
    ids = {f: id_column(events, f) for f in ("session_id", "streamer_id", "product_id")}
    _check_requirements(events, kind, ids)
    code = pd.Series(kind).map(EVENT_CODE).to_numpy(np.int64)
    ts = events["ts"].to_numpy(np.int64)
    return EventColumns(
        ts=ts,
        ts_list=ts.tolist(),
        user=events["user_id"].to_numpy(np.int64).tolist(),
        code=code.tolist(),
        session=ids["session_id"].tolist(),
        streamer=ids["streamer_id"].tolist(),
        product=ids["product_id"].tolist(),
        value=_value_column(events, kind).tolist(),
    )
