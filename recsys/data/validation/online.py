"""The offline event rules applied to events posted one batch at a time to a running service.

A service receives events that pydantic already typed (known fields only, ids in int64 range,
the fields each event type requires). What typing cannot see is checked here, by the same
check functions ``validate`` runs over the events table (``recsys.data.validation.checks``),
so a posted event and a logged event are judged alike and fail with the same words:

- references: a session, streamer or product id must name a row of the service's tables
  ("session_id: unknown session"); a new *viewer* is not an error (cold start), so unknown
  user ids are taken;
- ``ts`` within the session's window, the streamer the session's own ("streamer_id: not the
  session's streamer"), no negative dwell, amount or coupon value;

and three rules that only make sense for a single event arriving now:

- ``ts`` within ``[now - max_past_s, now + max_future_s]`` of the service clock ("ts: outside
  service window"): a far-future time would otherwise decay every popularity it touches;
- a product named with its session must be on that session's shelf ("product_id: not on the
  session's shelf");
- comment text is NFKC-normalised with control and format characters removed
  (``clean_text``); a comment left empty is refused ("comment: empty after cleaning").

``OnlineEventChecker.check`` answers per event: the accepted records (cleaned) and, for each
rejected one, its index in the batch and every reason, joined as the quarantine joins them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.data.schema import EVENT_TYPES, TABLES
from recsys.data.validation.checks import (
    Finding,
    Known,
    Parsed,
    finding,
    negatives,
    references,
    required_by_type,
    session_streamer,
    unknown_event_type,
    within_session,
)
from recsys.data.validation.coercion import ParsedColumn

EVENT_FIELDS = TABLES["events"].names
# Control (Cc), format (Cf), surrogate (Cs), private-use (Co) and unassigned (Cn) characters.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_TYPE_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}


@dataclass(frozen=True)
class EventWindow:
    """How far an event's time may lie from the service clock."""

    max_past_s: int = 24 * 3600
    max_future_s: int = 60

    def __post_init__(self) -> None:
        for name in ("max_past_s", "max_future_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"EventWindow.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Rejected:
    index: int  # position in the posted batch
    reason: str  # every reason, '; '-joined, as in the offline quarantine's ``_reason``
    keys: tuple[str, ...]  # "field: reason" of each finding (bounded set, for counting)


@dataclass(frozen=True)
class CheckResult:
    accepted: list[dict]  # the accepted records, comment text cleaned
    rejected: list[Rejected]


def clean_text(text: str) -> str:
    """NFKC-normalised, control and format characters removed, outer whitespace stripped."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(
        " " if ch in "\t\n\r" else ch
        for ch in text
        if ch in "\t\n\r" or unicodedata.category(ch) not in _DROPPED_CATEGORIES
    ).strip()


def _column(records: Sequence[dict], field: str, kind: str) -> ParsedColumn:
    values = [r.get(field) for r in records]
    null = np.array([v is None for v in values], dtype=bool)
    if kind == "int":
        array = np.array([0 if v is None else v for v in values], dtype=np.int64)
    elif kind == "float":
        array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    else:
        array = np.array(values, dtype=object)
    return ParsedColumn(values=array, null=null, bad=np.zeros(len(values), dtype=bool))


def parsed_events(records: Sequence[dict]) -> Parsed:
    """Typed event records (field names of the events table) as the checks' parsed columns."""
    parsed = {c.name: _column(records, c.name, c.kind) for c in TABLES["events"].columns}
    n = len(records)
    # Posted events carry no event_id; positions stand in (no check here reads them).
    parsed["event_id"] = ParsedColumn(np.arange(n), np.zeros(n, bool), np.zeros(n, bool))
    return parsed


class OnlineEventChecker:
    """Checks posted events against the tables a service started from."""

    def __init__(self, known: Known, shelf_keys: np.ndarray, window: EventWindow) -> None:
        self.known, self.shelf_keys, self.window = known, shelf_keys, window

    @classmethod
    def from_tables(cls, tables, *, window: EventWindow | None = None) -> OnlineEventChecker:
        """From a world's ``LiveCommerceTables`` (users, streamers, products, sessions, shelf)."""
        accepted = {
            name: getattr(tables, name)
            for name in ("users", "streamers", "products", "live_sessions")
        }
        known = Known.from_accepted(accepted)
        showcase = tables.showcase
        keys = _shelf_keys(
            known,
            showcase["session_id"].to_numpy(np.int64),
            showcase["product_id"].to_numpy(np.int64),
        )
        return cls(known, np.unique(keys), window or EventWindow())

    def findings(self, parsed: Parsed, now: int) -> list[Finding]:
        """Every finding, in the offline check order, then the online-only rules."""
        # The codes ``checks.event_type_codes`` gives, looked up directly: a batch is small.
        codes = np.array([_TYPE_CODE.get(t, -1) for t in parsed["event_type"].values], np.int64)
        out = [
            *negatives(parsed, "events"),
            *(f for f in references(parsed, "events", self.known) if f.field != "user_id"),
            unknown_event_type(parsed, codes),
            *required_by_type(parsed, codes),
            within_session(parsed, "ts", self.known),
            session_streamer(parsed, self.known),
            self._service_window(parsed, now),
            self._on_shelf(parsed),
        ]
        return [f for f in out if len(f.rows)]

    def check(self, records: Sequence[dict], now: int) -> CheckResult:
        """Accepted (cleaned) records and per-event rejections of one posted batch."""
        records = [_cleaned(r) for r in records]
        parsed = parsed_events(records)
        found = self.findings(parsed, now) + [_empty_comment(parsed)]
        reasons: dict[int, list[str]] = {}
        keys: dict[int, list[str]] = {}
        for f in found:
            for row, detail in zip(f.rows.tolist(), f.details.tolist(), strict=True):
                reasons.setdefault(row, []).append(f"{f.key} {detail}" if detail else f.key)
                keys.setdefault(row, []).append(f.key)
        rejected = [
            Rejected(index=row, reason="; ".join(reasons[row]), keys=tuple(keys[row]))
            for row in sorted(reasons)
        ]
        accepted = [r for i, r in enumerate(records) if i not in reasons]
        return CheckResult(accepted=accepted, rejected=rejected)

    def _service_window(self, parsed: Parsed, now: int) -> Finding:
        ts = parsed["ts"]
        low, high = now - self.window.max_past_s, now + self.window.max_future_s
        mask = ts.present & ((ts.values < low) | (ts.values > high))
        return finding(
            "ts", "outside service window",
            mask, "(", ts.values, f" not in [{low}, {high}] around now {now})",
        )  # fmt: skip

    def _on_shelf(self, parsed: Parsed) -> Finding:
        session, product = parsed["session_id"], parsed["product_id"]
        _, session_known = self.known.locate("live_sessions", session.values)
        _, product_known = self.known.locate("products", product.values)
        both = session.present & product.present & session_known & product_known
        keys = _shelf_keys(self.known, session.values, product.values)
        pos = np.minimum(np.searchsorted(self.shelf_keys, keys), max(len(self.shelf_keys) - 1, 0))
        on_shelf = (
            self.shelf_keys[pos] == keys if len(self.shelf_keys) else np.zeros(len(keys), bool)
        )
        return finding(
            "product_id", "not on the session's shelf",
            both & ~on_shelf, "(", product.values, " in session ", session.values, ")",
        )  # fmt: skip


def _shelf_keys(known: Known, session: np.ndarray, product: np.ndarray) -> np.ndarray:
    """One int64 per (session, product) pair of known ids: session position * n + product."""
    s, _ = known.locate("live_sessions", session)
    p, _ = known.locate("products", product)
    return s.astype(np.int64) * (len(known.ids["products"]) + 1) + p


def _cleaned(record: dict) -> dict:
    comment = record.get("comment")
    return record if comment is None else {**record, "comment": clean_text(comment)}


def _empty_comment(parsed: Parsed) -> Finding:
    comment = parsed["comment"]
    empty = np.array([v == "" for v in comment.values], dtype=bool)
    return finding("comment", "empty after cleaning", empty)


__all__ = [
    "EVENT_FIELDS",
    "CheckResult",
    "EventWindow",
    "OnlineEventChecker",
    "Rejected",
    "clean_text",
    "parsed_events",
]
