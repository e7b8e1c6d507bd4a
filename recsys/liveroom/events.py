"""Room events as columns: parsing, checking and counting what is rejected.

The aggregator works on numpy columns, not on one dict per event, so a replay of a million
events costs a few vectorised passes. ``from_frame`` takes the project's event table (plus
``present`` rows: the product put on show at ``ts``); ``from_records`` takes JSON objects from
the HTTP service. Nothing is dropped silently: every row that cannot be used is returned as a
``Reject`` naming its row, field and reason.

Comment text is cleaned of control characters (counted as ``sanitised``), rejected above
``MAX_TEXT`` characters, so a 20 kB comment never reaches the clusterer or the page, and its
PII (phone numbers, WeChat / QQ ids, e-mail, ID cards, house numbers) is replaced by typed
placeholders (``recsys.privacy.pii``) before it is clustered or shown.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys.privacy.pii import scrub

KINDS: tuple[str, ...] = (
    "enter",
    "leave",
    "comment",
    "like",
    "share",
    "follow",
    "click",
    "cart",
    "coupon_claim",
    "purchase",
    "present",
)
KIND_CODE = {k: i for i, k in enumerate(KINDS)}
NEEDS_PRODUCT = frozenset({"click", "cart", "coupon_claim", "purchase", "present"})
MAX_TEXT = 500
INT64_MAX = 2**63 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")


@dataclass(frozen=True)
class Reject:
    row: int
    field: str
    reason: str

    def message(self) -> str:
        return f"row {self.row}: {self.field}: {self.reason}"


@dataclass(frozen=True)
class Columns:
    """One batch of events, all arrays of equal length (rows in arrival order)."""

    event_id: np.ndarray  # int64
    ts: np.ndarray  # int64 Unix seconds
    room: np.ndarray  # int64 live session id
    user: np.ndarray  # int64
    kind: np.ndarray  # int8 index into KINDS
    product: np.ndarray  # int64, -1 when none
    amount: np.ndarray  # float64, 0 when none (purchase GMV)
    dwell: np.ndarray  # float64, 0 when none (leave)
    text: np.ndarray  # object, None when none
    sanitised: int = 0

    def __len__(self) -> int:
        return len(self.event_id)

    def take(self, index: np.ndarray) -> Columns:
        arrays = {f: getattr(self, f)[index] for f in _ARRAY_FIELDS}
        return Columns(**arrays)


_ARRAY_FIELDS = ("event_id", "ts", "room", "user", "kind", "product", "amount", "dwell", "text")


@dataclass
class Parsed:
    columns: Columns
    rejects: list[Reject] = field(default_factory=list)


def clean_text(text: str) -> tuple[str | None, str | None, bool]:
    """(cleaned text or None, reason it is unusable or None, whether control characters were
    removed). PII in the text is replaced by typed placeholders (``[PHONE]`` ...) before the
    clusterer or the page sees it."""
    cleaned = _CONTROL.sub("", text)
    if len(cleaned) > MAX_TEXT:
        return None, f"comment is {len(cleaned)} characters, more than {MAX_TEXT}", False
    return scrub(cleaned), None, len(cleaned) != len(text)


def from_records(records: list[dict]) -> Parsed:
    """Columns from JSON objects; malformed rows become rejects (row = index in ``records``).
    Plain Python per row and one array per field: a request of a few events costs
    microseconds, not a DataFrame."""
    rows, rejects, sanitised = [], [], 0
    for i, rec in enumerate(records):
        row, problem = _parse_record(rec)
        if problem:
            rejects.append(Reject(i, *problem))
            continue
        if row[4] == KIND_CODE["comment"]:
            text, reason, changed = clean_text(row[8])
            if reason:
                rejects.append(Reject(i, "comment", reason))
                continue
            row, sanitised = (*row[:8], text), sanitised + changed
        rows.append(row)
    fields = list(zip(*rows, strict=True)) if rows else [()] * len(_ARRAY_FIELDS)
    dtypes = (np.int64, np.int64, np.int64, np.int64, np.int8, np.int64, np.float64, np.float64)
    arrays = {
        name: np.array(values, dtype=dtype)
        for name, values, dtype in zip(_ARRAY_FIELDS, fields, dtypes, strict=False)
    }
    text = np.empty(len(rows), dtype=object)
    text[:] = list(fields[8])
    return Parsed(Columns(**arrays, text=text, sanitised=sanitised), rejects)


def _parse_record(rec) -> tuple[tuple, tuple[str, str] | None]:
    if not isinstance(rec, dict):
        return (), ("event", f"expected a JSON object, got {type(rec).__name__}")
    kind = rec.get("event_type")
    if kind not in KIND_CODE:
        return (), ("event_type", f"unknown event type {kind!r}; expected one of {KINDS}")
    values = []
    for key in ("event_id", "ts", "session_id", "user_id"):
        v = rec.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= INT64_MAX:
            return (), (key, f"must be an integer in [0, 2^63), got {v!r}")
        values.append(v)
    product = rec.get("product_id")
    if kind in NEEDS_PRODUCT and (
        isinstance(product, bool) or not isinstance(product, int) or not 0 <= product <= INT64_MAX
    ):
        return (), ("product_id", f"a {kind} needs a product id, got {product!r}")
    amount, problem = _number(rec, "amount")
    dwell, problem2 = _number(rec, "dwell_s")
    if problem or problem2:
        return (), problem or problem2
    text = rec.get("comment")
    if kind == "comment" and not isinstance(text, str):
        return (), ("comment", f"a comment needs its text, got {text!r}")
    product = product if kind in NEEDS_PRODUCT else -1
    return (*values, KIND_CODE[kind], product, amount, dwell, text), None


def _number(rec: dict, key: str) -> tuple[float, tuple[str, str] | None]:
    v = rec.get(key)
    if v is None:
        return 0.0, None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        return 0.0, (key, f"must be a finite number >= 0, got {v!r}")
    return float(v), None


def from_frame(events: pd.DataFrame) -> Parsed:
    """Columns from an event table (``session_id``, ``user_id``, ``event_type`` ...)."""
    frame = pd.DataFrame(
        {
            "event_id": events["event_id"],
            "ts": events["ts"],
            "room": events["session_id"],
            "user": events["user_id"],
            "kind": events["event_type"],
            "product": events["product_id"] if "product_id" in events else None,
            "amount": events["amount"] if "amount" in events else 0.0,
            "dwell": events["dwell_s"] if "dwell_s" in events else 0.0,
            "text": events["comment"] if "comment" in events else None,
        }
    )
    return _columns(frame.reset_index(drop=True))


def _columns(frame: pd.DataFrame) -> Parsed:
    rejects = []
    kind = frame["kind"].map(KIND_CODE)
    bad = kind.isna().to_numpy()
    rejects += [
        Reject(int(i), "event_type", f"unknown event type {frame['kind'].iloc[i]!r}")
        for i in np.flatnonzero(bad)
    ]
    room = pd.to_numeric(frame["room"], errors="coerce")
    no_room = room.isna().to_numpy() & ~bad
    rejects += [Reject(int(i), "session_id", "missing") for i in np.flatnonzero(no_room)]
    product = pd.to_numeric(frame["product"], errors="coerce").fillna(-1).astype(np.int64)
    needs = frame["kind"].isin(NEEDS_PRODUCT).to_numpy()
    no_product = needs & (product.to_numpy() < 0) & ~bad & ~no_room
    rejects += [Reject(int(i), "product_id", "missing") for i in np.flatnonzero(no_product)]
    amount = pd.to_numeric(frame["amount"], errors="coerce").fillna(0.0).to_numpy(np.float64)
    dwell = pd.to_numeric(frame["dwell"], errors="coerce").fillna(0.0).to_numpy(np.float64)
    keep = ~(bad | no_room | no_product)
    text, text_rejects, sanitised = _texts(frame, keep)
    rejects += text_rejects
    keep &= ~np.isin(np.arange(len(frame)), [r.row for r in text_rejects])
    cols = Columns(
        event_id=frame["event_id"].to_numpy(np.int64)[keep],
        ts=frame["ts"].to_numpy(np.int64)[keep],
        room=room.to_numpy()[keep].astype(np.int64),
        user=frame["user"].to_numpy(np.int64)[keep],
        kind=kind.to_numpy()[keep].astype(np.int8),
        product=product.to_numpy()[keep],
        amount=amount[keep],
        dwell=dwell[keep],
        text=text[keep],
        sanitised=sanitised,
    )
    return Parsed(cols, rejects)


def _texts(frame: pd.DataFrame, keep: np.ndarray):
    text = frame["text"].to_numpy(dtype=object) if frame["text"] is not None else None
    out = np.full(len(frame), None, dtype=object)
    rejects, sanitised = [], 0
    is_comment = (frame["kind"] == "comment").to_numpy() & keep
    for i in np.flatnonzero(is_comment):
        value = text[i] if text is not None else None
        if not isinstance(value, str):
            rejects.append(Reject(int(i), "comment", "a comment needs its text"))
            continue
        cleaned, reason, changed = clean_text(value)
        if reason:
            rejects.append(Reject(int(i), "comment", reason))
        out[i], sanitised = cleaned, sanitised + changed
    return out, rejects, sanitised
