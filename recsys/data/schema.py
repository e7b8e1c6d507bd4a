"""The live-commerce data model: six tables and the columns each must carry, and the consent
decisions a world may hold beside them (``CONSENT``).

Every table is a pandas DataFrame stored as Parquet. Entity ids are int64; user ids are
pseudonymised at ingestion (see ``recsys.data.pseudonym``). Times are int64 Unix seconds (UTC).
Optional id columns use pandas' nullable ``Int64``; optional numbers use NaN; optional text
uses missing values.

Which optional fields an event must carry depends on its type (``EVENT_REQUIREMENTS``):
an ``enter`` names the live session and streamer, a ``purchase`` names the product and its
amount, a ``leave`` carries the dwell time of the visit it closes, and so on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["int", "float", "str", "bool"]

EVENT_TYPES: tuple[str, ...] = (
    "enter",
    "leave",
    "comment",
    "like",
    "click",
    "cart",
    "purchase",
    "refund",
    "coupon_claim",
    "follow",
    "share",
)


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = False


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    key: str | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")


USERS = TableSchema(
    "users",
    (
        Column("user_id", "int"),
        Column("age_band", "str"),
        Column("gender", "str"),
        Column("region", "str"),
        Column("signup_ts", "int"),
    ),
    key="user_id",
)

STREAMERS = TableSchema(
    "streamers",
    (
        Column("streamer_id", "int"),
        Column("category", "str"),
        Column("follower_count", "int"),
    ),
    key="streamer_id",
)

PRODUCTS = TableSchema(
    "products",
    (
        Column("product_id", "int"),
        Column("category", "str"),
        Column("brand", "str"),
        Column("imported", "bool"),
        Column("price", "float"),
        Column("keywords", "str"),  # space-separated tokens
    ),
    key="product_id",
)

LIVE_SESSIONS = TableSchema(
    "live_sessions",
    (
        Column("session_id", "int"),
        Column("streamer_id", "int"),
        Column("start_ts", "int"),
        Column("end_ts", "int"),
    ),
    key="session_id",
)

SHOWCASE = TableSchema(
    "showcase",
    (
        Column("session_id", "int"),
        Column("product_id", "int"),
        Column("start_ts", "int"),
        Column("end_ts", "int"),
    ),
)

EVENTS = TableSchema(
    "events",
    (
        Column("event_id", "int"),
        Column("ts", "int"),
        Column("user_id", "int"),
        Column("event_type", "str"),
        Column("session_id", "int", nullable=True),
        Column("streamer_id", "int", nullable=True),
        Column("product_id", "int", nullable=True),
        Column("dwell_s", "float", nullable=True),
        Column("amount", "float", nullable=True),
        Column("coupon_value", "float", nullable=True),
        Column("comment", "str", nullable=True),
    ),
    key="event_id",
)

TABLES: dict[str, TableSchema] = {
    t.name: t for t in (USERS, STREAMERS, PRODUCTS, LIVE_SESSIONS, SHOWCASE, EVENTS)
}

# Consent decisions a world folder may hold beside its tables (``CONSENT_FILE``; read and
# honoured by ``recsys.privacy.consent``). Not one of the six tables: no other table refers to
# it, and a decision may name a viewer with no events. ``channel`` is "" for purposes other
# than marketing and for a marketing decision that speaks for every channel.
CONSENT_FILE = "consent.parquet"
CONSENT_PURPOSES: tuple[str, ...] = ("personalisation", "marketing", "coupons")
CONSENT_CHANNELS: tuple[str, ...] = ("in_app", "push", "sms")
CONSENT = TableSchema(
    "consent",
    (
        Column("user_id", "int"),
        Column("purpose", "str"),
        Column("channel", "str", nullable=True),
        Column("granted", "bool"),
        Column("ts", "int"),
    ),
)
# Every table validation and ingestion know by name: the six, then consent.
SCHEMAS: dict[str, TableSchema] = {**TABLES, CONSENT.name: CONSENT}

# Optional event fields that become required for a given event type.
EVENT_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "enter": ("session_id", "streamer_id"),
    "leave": ("session_id", "streamer_id", "dwell_s"),
    "comment": ("session_id", "streamer_id", "comment"),
    "like": ("session_id", "streamer_id"),
    "click": ("product_id",),
    "cart": ("product_id",),
    "purchase": ("product_id", "amount"),
    "refund": ("product_id", "amount"),
    "coupon_claim": ("coupon_value",),
    "follow": ("streamer_id",),
    "share": ("session_id", "streamer_id"),
}

# Pandas dtypes each kind is stored with (nullable ints use the masked Int64 dtype).
PANDAS_DTYPES: dict[tuple[Kind, bool], str] = {
    ("int", False): "int64",
    ("int", True): "Int64",
    ("float", False): "float64",
    ("float", True): "float64",
    ("str", False): "str",
    ("str", True): "str",
    ("bool", False): "bool",
    ("bool", True): "boolean",
}


def pandas_dtype(column: Column) -> str:
    return PANDAS_DTYPES[(column.kind, column.nullable)]
