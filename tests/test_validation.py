"""Boundary validation of the live-commerce tables: strict errors, lenient quarantine, fuzzing."""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.data.schema import TABLES, pandas_dtype
from recsys.data.tables import LiveCommerceTables, save_tables
from recsys.data.validation import CHECK_ORDER, ValidationError, validate, validate_dir

# Events of a small world: (event_id, ts, user, type, session, streamer, product, dwell,
# amount, coupon, comment). Session 1000 (streamer 10) runs [0, 1000], session 1001
# (streamer 11) runs [500, 2000].
N = None
EVENT_ROWS = [
    (1, 10, 1, "enter", 1000, 10, N, N, N, N, N),
    (2, 20, 1, "click", N, N, 100, N, N, N, N),
    (3, 30, 1, "cart", 1000, 10, 100, N, N, N, N),
    (4, 40, 1, "purchase", 1000, 10, 100, N, 19.9, N, N),
    (5, 50, 2, "enter", 1000, 10, N, N, N, N, N),
    (6, 60, 2, "comment", 1000, 10, N, N, N, N, "nice"),
    (7, 70, 2, "like", 1000, 10, N, N, N, N, N),
    (8, 80, 2, "coupon_claim", N, N, N, N, N, 5.0, N),
    (9, 90, 2, "leave", 1000, 10, N, 40.0, N, N, N),
    (10, 600, 3, "enter", 1001, 11, N, N, N, N, N),
    (11, 610, 3, "follow", N, 11, N, N, N, N, N),
    (12, 620, 3, "share", 1001, 11, N, N, N, N, N),
    (13, 700, 3, "refund", N, N, 102, N, 30.0, N, N),
    (14, 800, 3, "leave", 1001, 11, N, 200.0, N, N, N),
]


def _frame(name: str, rows: list[tuple]) -> pd.DataFrame:
    schema = TABLES[name]
    df = pd.DataFrame(rows, columns=schema.names)
    return df.astype({c.name: pandas_dtype(c) for c in schema.columns})


def make_world() -> LiveCommerceTables:
    return LiveCommerceTables(
        users=_frame(
            "users",
            [
                (1, "18-24", "f", "north", 0),
                (2, "25-34", "m", "south", 5),
                (3, "35-44", "f", "east", 9),
            ],
        ),
        streamers=_frame("streamers", [(10, "beauty", 1200), (11, "food", 300)]),
        products=_frame(
            "products",
            [
                (100, "beauty", "acme", False, 19.9, "lipstick red"),
                (101, "beauty", "acme", True, 45.0, "serum"),
                (102, "food", "tasty", False, 30.0, "tea green"),
            ],
        ),
        live_sessions=_frame("live_sessions", [(1000, 10, 0, 1000), (1001, 11, 500, 2000)]),
        showcase=_frame(
            "showcase", [(1000, 100, 0, 500), (1000, 101, 100, 900), (1001, 102, 600, 1500)]
        ),
        events=_frame("events", EVENT_ROWS),
    )


@pytest.fixture
def world() -> LiveCommerceTables:
    return make_world()


def put(tables: LiveCommerceTables, table: str, row: int, field: str, value: object) -> None:
    """Set one cell, widening the column to object when the value does not fit its dtype."""
    df = tables.table(table)
    try:
        df.loc[row, field] = value
    except (TypeError, ValueError):
        df[field] = df[field].astype(object)
        df.loc[row, field] = value


# (table, row, field, reason, new value): one bad input per case, in a valid world.
BAD_INPUTS = {
    "int-junk": ("events", 2, "user_id", "not an integer", "abc"),
    "float-junk": ("events", 3, "amount", "not a number", "lots"),
    "bool-junk": ("products", 1, "imported", "not a boolean", "maybe"),
    "null-required-str": ("users", 1, "region", "missing value", None),
    "null-required-int": ("events", 5, "ts", "missing value", None),
    "required-by-type": ("events", 3, "amount", "required for event type", None),
    "unknown-type": ("events", 6, "event_type", "unknown event type", "teleport"),
    "unknown-user": ("events", 1, "user_id", "unknown user", 999),
    "unknown-product": ("events", 1, "product_id", "unknown product", 555),
    "unknown-session": ("events", 0, "session_id", "unknown session", 9999),
    "unknown-streamer": ("events", 10, "streamer_id", "unknown streamer", 77),
    "session-unknown-streamer": ("live_sessions", 1, "streamer_id", "unknown streamer", 77),
    "showcase-unknown-session": ("showcase", 2, "session_id", "unknown session", 5555),
    "showcase-unknown-product": ("showcase", 0, "product_id", "unknown product", 555),
    "ts-outside-session": ("events", 4, "ts", "outside session window", 5000),
    "streamer-not-sessions": ("events", 6, "streamer_id", "not the session's streamer", 11),
    "showcase-outside-session": ("showcase", 1, "end_ts", "outside session window", 1500),
    "session-ends-before-start": ("live_sessions", 0, "end_ts", "before start_ts", -5),
    "negative-amount": ("events", 3, "amount", "negative amount", -5.0),
    "negative-dwell": ("events", 8, "dwell_s", "negative dwell", -1.0),
    "negative-coupon": ("events", 7, "coupon_value", "negative coupon value", -5.0),
    "negative-price": ("products", 1, "price", "negative price", -2.0),
    "negative-followers": ("streamers", 0, "follower_count", "negative follower count", -1),
    "duplicate-event": ("events", 6, "event_id", "duplicate event_id", 6),
    "duplicate-user": ("users", 2, "user_id", "duplicate user_id", 1),
    "duplicate-streamer": ("streamers", 1, "streamer_id", "duplicate streamer_id", 10),
    "duplicate-product": ("products", 2, "product_id", "duplicate product_id", 100),
    "duplicate-session": ("live_sessions", 1, "session_id", "duplicate session_id", 1000),
    "ts-back-in-time": ("events", 2, "ts", "decreases within session", 5),
}


def assert_balanced(tables: LiveCommerceTables, report) -> None:
    for name in CHECK_ORDER:
        c = report.counts[name]
        assert c.accepted + c.rejected == c.input == len(tables.table(name))
        assert len(report.tables.table(name)) == c.accepted
        assert len(report.rejected[name]) == c.rejected


def test_valid_world_passes_untouched(world, tmp_path):
    report = validate(world, quarantine_dir=tmp_path)
    assert report.n_rejected == 0
    for name in CHECK_ORDER:
        pd.testing.assert_frame_equal(report.tables.table(name), world.table(name))
        assert len(pd.read_parquet(report.quarantine[name])) == 0
    assert "0 of 27 rows rejected" in report.summary()


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_strict_names_table_row_field_and_reason(world, case):
    table, row, field, reason, value = BAD_INPUTS[case]
    put(world, table, row, field, value)
    with pytest.raises(ValidationError) as caught:
        validate(world, source="world-a")
    e = caught.value
    assert (e.table, e.row, e.field, e.reason) == (table, row, field, reason)
    message = str(e)
    assert message.startswith(f"world-a: {table} row {row}")
    assert f"field '{field}': {reason}" in message
    key = TABLES[table].key
    if key is not None:
        assert f"({key}=" in message


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_lenient_quarantines_with_reason(world, case, tmp_path):
    table, row, field, reason, value = BAD_INPUTS[case]
    put(world, table, row, field, value)
    report = validate(world, mode="lenient", quarantine_dir=tmp_path)
    assert_balanced(world, report)
    quarantined = pd.read_parquet(tmp_path / f"{table}.parquet")
    assert len(quarantined) == report.counts[table].rejected
    hit = quarantined[quarantined["_row"] == row]
    assert len(hit) == 1
    assert f"{field}: {reason}" in hit["_reason"].iloc[0]
    assert report.counts[table].reasons[f"{field}: {reason}"] >= 1
    # What was accepted is valid on its own.
    assert validate(report.tables).n_rejected == 0


def test_strict_message_is_exact(world):
    put(world, "events", 3, "amount", -5.0)
    with pytest.raises(ValidationError, match=r"^<memory>: events row 3 \(event_id=4\): "):
        validate(world)
    try:
        validate(world)
    except ValidationError as e:
        assert str(e) == "<memory>: events row 3 (event_id=4): field 'amount': negative amount -5.0"
        assert isinstance(e, ValueError)


def test_strict_reports_first_table_in_check_order(world):
    put(world, "events", 0, "amount", -1.0)
    put(world, "products", 2, "price", -1.0)
    put(world, "products", 1, "imported", "maybe")
    with pytest.raises(ValidationError) as caught:
        validate(world)
    assert (caught.value.table, caught.value.row, caught.value.field) == ("products", 1, "imported")


@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_missing_column_is_a_table_error_in_both_modes(world, mode):
    world.users = world.users.drop(columns=["region", "gender"])
    with pytest.raises(ValidationError) as caught:
        validate(world, mode=mode)
    assert (caught.value.table, caught.value.row, caught.value.field) == ("users", None, "gender")
    assert str(caught.value).startswith("<memory>: users: field 'gender': missing column")


def test_rejections_cascade_from_users_to_events(world, tmp_path):
    put(world, "users", 2, "region", None)  # user 3 owns events 9..13
    report = validate(world, mode="lenient", quarantine_dir=tmp_path)
    assert_balanced(world, report)
    assert report.counts["users"].rejected == 1
    events = pd.read_parquet(tmp_path / "events.parquet")
    assert events["_row"].tolist() == [9, 10, 11, 12, 13]
    assert events["_reason"].tolist() == ["user_id: unknown user 3"] * 5
    assert report.counts["events"].reasons == {"user_id: unknown user": 5}


def test_rejections_cascade_from_sessions_to_showcase_and_events(world):
    put(world, "live_sessions", 1, "end_ts", 0)  # session 1001 now ends before it starts
    report = validate(world, mode="lenient")
    assert_balanced(world, report)
    assert report.counts["showcase"].reasons == {"session_id: unknown session": 1}
    assert report.counts["events"].reasons == {"session_id: unknown session": 3}


def test_all_reasons_of_a_row_are_joined(world):
    put(world, "events", 3, "amount", -5.0)
    put(world, "events", 3, "user_id", 99)
    report = validate(world, mode="lenient")
    reasons = report.rejected["events"]["_reason"].tolist()
    assert reasons == ["amount: negative amount -5.0; user_id: unknown user 99"]
    assert report.counts["events"].rejected == 1


def test_junk_values_are_kept_as_text_in_quarantine(world, tmp_path):
    put(world, "events", 2, "user_id", "abc")
    put(world, "events", 5, "user_id", "2")
    report = validate(world, mode="lenient", quarantine_dir=tmp_path)
    quarantined = pd.read_parquet(tmp_path / "events.parquet")
    assert quarantined["user_id"].tolist() == ["abc"]
    assert quarantined["_reason"].tolist() == ["user_id: not an integer 'abc'"]
    # Readable values in a mixed column are accepted and cast back to the schema dtype.
    accepted = report.tables.events
    assert accepted["user_id"].dtype == np.int64
    assert accepted["user_id"].tolist() == [1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3]


def test_text_columns_are_cast_to_schema_dtypes(world):
    world.events = world.events.astype(str).replace({"<NA>": None, "nan": None})
    world.products["imported"] = ["false", "1", "0"]
    report = validate(world)
    for name in ("events", "products"):
        pd.testing.assert_frame_equal(report.tables.table(name), make_world().table(name))


def test_validate_dir_names_the_folder(world, tmp_path):
    save_tables(world, tmp_path / "world")
    assert validate_dir(tmp_path / "world").n_rejected == 0
    put(world, "events", 3, "amount", -5.0)
    save_tables(world, tmp_path / "bad")
    with pytest.raises(ValidationError, match="bad: events row 3"):
        validate_dir(tmp_path / "bad")
    report = validate_dir(tmp_path / "bad", mode="lenient", quarantine_dir=tmp_path / "q")
    assert report.counts["events"].rejected == 1
    assert "amount: negative amount: 1" in report.summary()


def test_empty_tables_pass(world):
    for name in CHECK_ORDER:
        setattr(world, name, world.table(name).iloc[:0])
    report = validate(world, mode="lenient")
    assert all(c.input == c.accepted == 0 for c in report.counts.values())
    assert report.tables.events.dtypes.equals(make_world().events.dtypes)


def test_extra_columns_are_reported_and_kept_in_quarantine(world):
    world.events["note"] = "x"
    put(world, "events", 0, "user_id", 999)
    report = validate(world, mode="lenient")
    assert report.ignored_columns == {"events": ["note"]}
    assert "note" not in report.tables.events.columns
    assert report.rejected["events"]["note"].tolist() == ["x"]
    assert "ignored columns in events: ['note']" in report.summary()


def test_unknown_mode_is_refused(world):
    with pytest.raises(ValueError, match="mode"):
        validate(world, mode="loose")


ID_FIELDS = ("event_id", "user_id", "session_id", "streamer_id", "product_id")
MUTATIONS = st.tuples(
    st.sampled_from(
        [
            "junk",
            "null",
            "fraction",
            "negative",
            "unknown_type",
            "bad_ref",
            "duplicate_id",
            "shuffle_ts",
            "bool",
            "huge",
            "inf",
        ]
    ),  # fmt: skip
    st.integers(0, len(EVENT_ROWS) - 1),
    st.sampled_from(TABLES["events"].names),
    st.text(max_size=6),
)


def mutate(world: LiveCommerceTables, kind: str, row: int, field: str, text: str, rnd) -> None:
    events = world.events
    values: dict[str, Callable[[], object]] = {
        "junk": lambda: text,
        "null": lambda: None,
        "fraction": lambda: 1.5,
        "negative": lambda: -3,
        "bool": lambda: True,
        "huge": lambda: "99999999999999999999",
        "inf": lambda: float("inf"),
    }
    if kind in values:
        put(world, "events", row, field, values[kind]())
    elif kind == "unknown_type":
        put(world, "events", row, "event_type", "zzz")
    elif kind == "bad_ref":
        put(world, "events", row, rnd.choice(ID_FIELDS[1:]), 424242)
    elif kind == "duplicate_id":
        put(world, "events", row, "event_id", events["event_id"].iloc[(row + 1) % len(events)])
    else:
        ts = events["ts"].to_numpy(dtype=object).copy()
        rnd.shuffle(ts)
        events["ts"] = pd.Series(ts, dtype=events["ts"].dtype)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(MUTATIONS, max_size=6), rnd=st.randoms(use_true_random=False))
def test_fuzzed_events_never_crash_and_balance(mutations, rnd):
    world = make_world()
    for kind, row, field, text in mutations:
        mutate(world, kind, row, field, text, rnd)
    with tempfile.TemporaryDirectory() as tmp:
        report = validate(world, mode="lenient", quarantine_dir=tmp)
        assert len(pd.read_parquet(report.quarantine["events"])) == report.counts["events"].rejected
    assert_balanced(world, report)
    assert validate(report.tables).n_rejected == 0
    try:
        validate(world)
    except ValidationError as e:
        # Strict mode stops at the lowest row that lenient mode rejects.
        assert (e.table, e.row) == ("events", int(report.rejected["events"]["_row"].min()))
    else:
        assert report.n_rejected == 0


def test_tiny_synthetic_world_passes_strict(tmp_path):
    synthetic = pytest.importorskip("recsys.simulation", reason="synthetic world not built")
    synthetic.simulate(synthetic.SimConfig.from_preset("tiny", seed=0), tmp_path)
    report = validate_dir(tmp_path)
    assert report.n_rejected == 0
    assert report.counts["events"].input > 0
