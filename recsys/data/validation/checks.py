"""Row checks for the six live-commerce tables and the consent decisions, each one vectorised
over a whole table.

A check returns a ``Finding``: the field it concerns, a short reason that names the kind of
problem ("negative amount", "unknown user"), and the offending rows with a per-row detail.
Checks read parsed columns (``recsys.data.validation.coercion``) and skip values that are missing or
unreadable, which the column checks already report, so one fault gives one reason.

References are resolved against the rows *accepted* from tables checked earlier (``Known``),
so a row that points at a rejected entity is rejected in turn as pointing at an unknown one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.data.schema import (
    CONSENT_CHANNELS,
    CONSENT_PURPOSES,
    EVENT_REQUIREMENTS,
    EVENT_TYPES,
    SCHEMAS,
    TABLES,
    TableSchema,
)
from recsys.data.validation.coercion import INVALID_REASON, ParsedColumn

# Numeric fields that must not be negative, per table.
NON_NEGATIVE: dict[str, tuple[str, ...]] = {
    "streamers": ("follower_count",),
    "products": ("price",),
    "events": ("dwell_s", "amount", "coupon_value"),
}

# Id fields that must name an accepted row of another table: field -> (table, noun).
REFERENCES: dict[str, dict[str, tuple[str, str]]] = {
    "live_sessions": {"streamer_id": ("streamers", "streamer")},
    "showcase": {"session_id": ("live_sessions", "session"), "product_id": ("products", "product")},
    "events": {
        "user_id": ("users", "user"),
        "session_id": ("live_sessions", "session"),
        "streamer_id": ("streamers", "streamer"),
        "product_id": ("products", "product"),
    },
}

Parsed = dict[str, ParsedColumn]
# Tables with more ids than this are looked up by hash; smaller ones by binary search, which
# is faster while the sorted ids stay in cache.
HASHED_FROM = 50_000


@dataclass(frozen=True)
class Finding:
    field: str
    reason: str
    rows: np.ndarray  # (K,) int64 positional rows, ascending
    details: np.ndarray  # (K,) object: text completing the reason for each row ("" if none)

    @property
    def key(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(frozen=True)
class Known:
    """Accepted ids of the tables checked so far, and the accepted session windows."""

    ids: dict[str, np.ndarray]  # table -> (n,) sorted unique int64 keys
    session_start: np.ndarray  # (n_sessions + 1,) aligned with ids["live_sessions"], padded
    session_end: np.ndarray
    session_streamer: np.ndarray
    # Faster lookups of ``ids`` where they pay (``_lookup``): (low, position table) or a hash index.
    index: dict[str, object] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_accepted(cls, accepted: dict[str, pd.DataFrame]) -> Known:
        ids = {}
        for name, frame in accepted.items():
            key = TABLES[name].key
            if key is not None:
                ids[name] = np.sort(frame[key].to_numpy(dtype=np.int64))
        sessions = accepted.get(
            "live_sessions", pd.DataFrame(columns=TABLES["live_sessions"].names)
        )
        order = np.argsort(sessions["session_id"].to_numpy(dtype=np.int64), kind="stable")
        # One trailing pad entry, so that rows whose session is unknown (position 0) can be
        # looked up, and masked out afterwards, even when no session was accepted.
        start, end, streamer = (
            np.r_[sessions[c].to_numpy(dtype=np.int64)[order], 0]
            for c in ("start_ts", "end_ts", "streamer_id")
        )
        index = {name: _lookup(keys) for name, keys in ids.items()}
        return cls(ids, start, end, streamer, {k: v for k, v in index.items() if v is not None})

    def locate(self, table: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position of each value among the table's sorted ids, and whether it is there."""
        index = self.index.get(table)
        if isinstance(index, tuple):  # dense ids: position = table[value - low]
            low, table_pos = index
            at = values - low
            inside = (at >= 0) & (at < len(table_pos))
            pos = np.where(inside, table_pos[np.where(inside, at, 0)], -1)
            found = pos >= 0
            return np.where(found, pos, 0), found
        if index is not None:
            pos = index.get_indexer(values)
            found = pos >= 0
            return np.where(found, pos, 0), found
        ids = self.ids[table]
        pos = np.searchsorted(ids, values)
        found = pos < len(ids)
        found[found] = ids[pos[found]] == values[found]
        return np.where(found, pos, 0), found


def _lookup(keys: np.ndarray):
    """How a table's sorted unique ids are searched: ids spanning at most a few times their
    number get a position table (one array read per value); many sparse ids a hash index;
    few sparse ids binary search (None), fastest while they stay in cache."""
    if not len(keys) or np.any(keys[1:] == keys[:-1]):
        return None
    low, span = int(keys[0]), int(keys[-1]) - int(keys[0]) + 1
    if span <= 4 * len(keys) + 1024:
        table = np.full(span, -1, dtype=np.int64)
        table[keys - low] = np.arange(len(keys))
        return low, table
    return pd.Index(keys, copy=False) if len(keys) > HASHED_FROM else None


def finding(field: str, reason: str, mask: np.ndarray, *parts: str | np.ndarray) -> Finding:
    """Rows where ``mask`` holds; each row's detail joins ``parts`` (texts, or (N,) arrays read
    at that row), built only for the flagged rows."""
    rows = np.flatnonzero(mask)
    details = np.full(len(rows), "", dtype=object)
    if not len(rows):
        return Finding(field, reason, rows, details)
    for part in parts:
        # Only the flagged rows are taken: a text column may be an Arrow array, whose
        # conversion to Python strings would cost more than the whole check.
        details = details + (part if isinstance(part, str) else _text(np.asarray(part[rows])))
    return Finding(field, reason, rows, details)


def _text(values: np.ndarray) -> np.ndarray:
    """Texts quoted (so that junk and blanks are visible), other values as printed."""
    if values.dtype == object:
        return np.array([repr(v) if isinstance(v, str) else str(v) for v in values], dtype=object)
    return values.astype(str).astype(object)


def column_findings(raw: pd.DataFrame, parsed: Parsed, schema: TableSchema) -> list[Finding]:
    """Values unreadable as their kind, and missing values in required fields."""
    out = []
    for c in schema.columns:
        col = parsed[c.name]
        if col.bad.any():
            raw_values = raw[c.name].to_numpy(dtype=object)
            out.append(finding(c.name, INVALID_REASON[c.kind], col.bad, raw_values))
        if not c.nullable:
            out.append(finding(c.name, "missing value", col.null))
    return out


def duplicate_key(parsed: Parsed, schema: TableSchema) -> list[Finding]:
    """Repeats of a key after its first occurrence (the first one stands for the key)."""
    if schema.key is None:
        return []
    col = parsed[schema.key]
    present = col.present
    repeated = np.zeros(len(present), dtype=bool)
    repeated[present] = pd.Series(col.values[present]).duplicated(keep="first").to_numpy()
    return [finding(schema.key, f"duplicate {schema.key}", repeated, col.values)]


def negatives(parsed: Parsed, table: str) -> list[Finding]:
    out = []
    for field in NON_NEGATIVE.get(table, ()):
        col = parsed[field]
        reason = f"negative {field.removesuffix('_s').replace('_', ' ')}"
        out.append(finding(field, reason, col.present & (col.values < 0), col.values))
    return out


def references(parsed: Parsed, table: str, known: Known) -> list[Finding]:
    out = []
    for field, (target, noun) in REFERENCES.get(table, {}).items():
        col = parsed[field]
        _, found = known.locate(target, col.values)
        out.append(finding(field, f"unknown {noun}", col.present & ~found, col.values))
    return out


def end_before_start(parsed: Parsed) -> Finding:
    start, end = parsed["start_ts"], parsed["end_ts"]
    mask = start.present & end.present & (end.values < start.values)
    return finding("end_ts", "before start_ts", mask, end.values, " < ", start.values)


def within_session(parsed: Parsed, ts_field: str, known: Known) -> Finding:
    """Times outside the [start_ts, end_ts] window of their (accepted) session."""
    session, ts = parsed["session_id"], parsed[ts_field]
    pos, found = known.locate("live_sessions", session.values)
    start, end = known.session_start[pos], known.session_end[pos]
    mask = session.present & found & ts.present & ((ts.values < start) | (ts.values > end))
    return finding(
        ts_field, "outside session window",
        mask, "(", ts.values, " not in [", start, ", ", end, "] of session ", session.values, ")",
    )  # fmt: skip


def event_type_codes(parsed: Parsed) -> np.ndarray:
    """Index of each event's type in EVENT_TYPES; -1 for unknown or missing types."""
    # Factorising first means only the few distinct texts are looked up.
    codes, distinct = pd.factorize(parsed["event_type"].values)
    lookup = np.r_[pd.Index(EVENT_TYPES).get_indexer(distinct), -1]
    return lookup[codes]  # code -1 (missing) reads the trailing -1


def unknown_event_type(parsed: Parsed, codes: np.ndarray) -> Finding:
    event_type = parsed["event_type"]
    mask = event_type.present & (codes < 0)
    return finding("event_type", "unknown event type", mask, event_type.values)


def required_by_type(parsed: Parsed, codes: np.ndarray) -> list[Finding]:
    """Optional fields that an event's type makes required (EVENT_REQUIREMENTS)."""
    out = []
    fields = [f for f in TABLES["events"].names if any(f in r for r in EVENT_REQUIREMENTS.values())]
    for field in fields:
        # The extra last entry answers for code -1 (unknown type): nothing is required.
        needs = np.array([field in EVENT_REQUIREMENTS[t] for t in EVENT_TYPES] + [False])
        mask = needs[codes] & parsed[field].null
        out.append(finding(field, "required for event type", mask, parsed["event_type"].values))
    return out


def session_streamer(parsed: Parsed, known: Known) -> Finding:
    session, streamer = parsed["session_id"], parsed["streamer_id"]
    pos, found = known.locate("live_sessions", session.values)
    expected = known.session_streamer[pos]
    mask = session.present & found & streamer.present & (streamer.values != expected)
    return finding(
        "streamer_id", "not the session's streamer",
        mask, "(", streamer.values, " != ", expected, " of session ", session.values, ")",
    )  # fmt: skip


def monotone_in_session(parsed: Parsed, eligible: np.ndarray) -> Finding:
    """Events (in event_id order within a session) whose ts is earlier than one before them.

    Only ``eligible`` rows take part, so the rows that pass every check form non-decreasing
    sequences and one faulty event cannot condemn its neighbours through another fault.
    """
    session, ts, event_id = parsed["session_id"], parsed["ts"], parsed["event_id"]
    rows = np.flatnonzero(eligible & session.present & ts.present & event_id.present)
    ids = event_id.values[rows]
    if np.all(ids[1:] > ids[:-1]):  # logs in id order: a stable sort by session suffices
        codes, distinct = pd.factorize(session.values[rows])
        # Fewer than 65,536 sessions in a chunk: 16-bit codes sort by radix, in linear time.
        codes = codes.astype(np.uint16) if len(distinct) < 2**16 else codes
        order = rows[np.argsort(codes, kind="stable")]
    else:
        order = rows[np.lexsort((ids, session.values[rows]))]
    s, t = session.values[order], ts.values[order]
    first = np.r_[True, s[1:] != s[:-1]]
    running = _running_max_by_group(t, np.cumsum(first) - 1)
    before = np.r_[t[:1], running[:-1]]  # latest ts among the earlier events of the session
    earlier = np.zeros(len(ts.values), dtype=np.int64)
    earlier[order] = before
    mask = np.zeros(len(ts.values), dtype=bool)
    mask[order[~first & (t < before)]] = True
    return finding(
        "ts", "decreases within session",
        mask, "(", ts.values, " after ", earlier, " in session ", session.values, ")",
    )  # fmt: skip


def _running_max_by_group(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Running maximum restarting at each group (groups contiguous, numbered 0, 1, ...):
    each group is lifted above all earlier ones, so one accumulate serves them all."""
    if not len(values):
        return values
    low = values.min()
    span = int(values.max()) - int(low) + 1
    if span * (int(group[-1]) + 1) >= 2**62:  # would overflow: the grouped way
        return pd.Series(values).groupby(group, sort=False).cummax().to_numpy()
    lifted = (values - low) + group * span
    return np.maximum.accumulate(lifted) - group * span + low


def event_findings(parsed: Parsed, known: Known, earlier: list[Finding]) -> list[Finding]:
    codes = event_type_codes(parsed)
    out = [
        unknown_event_type(parsed, codes),
        *required_by_type(parsed, codes),
        within_session(parsed, "ts", known),
        session_streamer(parsed, known),
    ]
    flagged = np.zeros(len(codes), dtype=bool)
    for f in earlier + out:
        flagged[f.rows] = True
    return [*out, monotone_in_session(parsed, ~flagged)]


def consent_findings(parsed: Parsed) -> list[Finding]:
    """Purposes and channels outside the consent vocabulary (what a platform's labels did not
    map to), and a channel on a purpose that has none."""
    purpose = pd.Series(parsed["purpose"].values, dtype="str")
    channel = pd.Series(parsed["channel"].values, dtype="str").fillna("")
    present = parsed["purpose"].present
    unknown = present & ~purpose.isin(CONSENT_PURPOSES).to_numpy(bool)
    bad_channel = ~channel.isin(("", *CONSENT_CHANNELS)).to_numpy(bool)
    misplaced = present & ~unknown & ~bad_channel & (channel != "").to_numpy(bool)
    misplaced &= (purpose != "marketing").to_numpy(bool)
    return [
        finding("purpose", "unknown purpose", unknown, purpose.to_numpy(object),
                f" (known: {', '.join(CONSENT_PURPOSES)})"),
        finding("channel", "unknown channel", bad_channel, channel.to_numpy(object),
                f" (known: {', '.join(CONSENT_CHANNELS)}, or blank for all)"),
        finding("channel", "channel on a purpose without channels", misplaced,
                channel.to_numpy(object), " for ", purpose.to_numpy(object)),
    ]  # fmt: skip


def check_table(name: str, raw: pd.DataFrame, parsed: Parsed, known: Known) -> list[Finding]:
    """Every finding for one table, in a fixed order (the first one names a row's fault)."""
    schema = SCHEMAS[name]
    out = [
        *column_findings(raw, parsed, schema),
        *duplicate_key(parsed, schema),
        *negatives(parsed, name),
        *references(parsed, name, known),
    ]
    if name in ("live_sessions", "showcase"):
        out.append(end_before_start(parsed))
    if name == "showcase":
        out += [within_session(parsed, "start_ts", known), within_session(parsed, "end_ts", known)]
    if name == "events":
        out += event_findings(parsed, known, out)
    if name == "consent":
        out += consent_findings(parsed)
    return [f for f in out if len(f.rows)]
