"""recsys-ingest on raw files: the round trip through a platform's naming, bad files in lenient
and strict mode, appending more days, and the shipped mappings."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from recsys.cli import ingest as ingest_cli
from recsys.cli.pipeline import compose_job
from recsys.data.ingest.export import export_world
from recsys.data.pseudonym import pseudonymise
from recsys.data.tables import ENTITY_TABLES, load_tables, read_manifest
from recsys.data.validation import ValidationError
from recsys.data.vocab import load_vocabs

REPO = Path(__file__).resolve().parents[1]
TABLES = (*ENTITY_TABLES, "events")


def _example_module():
    spec = importlib.util.spec_from_file_location("export_world", REPO / "experiments" /
                                                  "export_world.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ingest(source, out, *overrides):
    cfg = compose_job("ingest", [f"source={source}", f"out_dir={out}", "progress=false",
                                 *overrides])  # fmt: skip
    return ingest_cli.run(cfg)


@pytest.fixture(scope="module")
def example_raw(tiny_world_dir, tmp_path_factory):
    """The tiny world exported with the example platform's names, as CSV."""
    raw = tmp_path_factory.mktemp("raw")
    _example_module().export_example(str(tiny_world_dir), str(raw), "csv")
    return raw


def test_example_mapping_matches_the_export_script(example_raw, tiny_world_dir, tmp_path):
    shipped = yaml.safe_load((REPO / "recsys/conf/tables/example.yaml").read_text())
    mapping = _example_module().export_example(str(tiny_world_dir), str(tmp_path), "jsonl")
    for table, spec in mapping.items():
        assert shipped[table]["columns"] == spec["columns"], table
        assert shipped[table]["time_unit"] == spec["time_unit"], table
        assert shipped[table]["values"] == spec.get("values", {}), table
    header = (example_raw / "events" / "part-00000.csv").open().readline()
    assert "account_id" in header and "user_id" not in header


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_round_trip_gives_the_same_tables(fmt, tiny_world_dir, tmp_path):
    module = _example_module()
    module.export_example(str(tiny_world_dir), str(tmp_path / "raw"), fmt)
    report = _ingest(tmp_path / "raw", tmp_path / "world", "tables=example", "pseudonymise=false",
                     "chunk_rows=4000")  # fmt: skip
    assert report.n_rejected == 0
    before, after = load_tables(tiny_world_dir), load_tables(tmp_path / "world")
    for name in TABLES:
        pd.testing.assert_frame_equal(before.table(name), after.table(name), obj=name)
    manifest = read_manifest(tmp_path / "world")
    assert manifest["generator"] == "recsys.ingest" and not (tmp_path / "world" / "truth").exists()
    assert manifest["event_counts"] == read_manifest(tiny_world_dir)["event_counts"]


def test_pseudonymised_ingest_changes_only_user_ids(example_raw, tiny_world_dir, tmp_path):
    _ingest(example_raw, tmp_path / "world", "tables=example", "key=shop-secret")
    before, after = load_tables(tiny_world_dir), load_tables(tmp_path / "world")
    for name in ("users", "events"):
        expected = before.table(name).assign(
            user_id=pseudonymise(before.table(name)["user_id"].to_numpy(), "shop-secret")
        )
        pd.testing.assert_frame_equal(expected, after.table(name), obj=name)
    text = b"".join(p.read_bytes() for p in (tmp_path / "world").rglob("*.parquet"))
    assert str(int(before.users["user_id"].iloc[0])).encode() not in text


def _bad_events(world_dir: Path, out: Path) -> tuple[Path, int]:
    """An events CSV (schema names) with one row of each fault, the last line cut off."""
    events = load_tables(world_dir).events.sort_values("event_id").head(120)
    rows = events.astype(object).to_dict("records")
    click = next(r for r in rows if r["event_type"] == "click")
    bad = [
        {**rows[10], "event_id": 900001, "ts": "abc"},  # wrong type
        {**rows[11], "event_id": 900002, "event_type": "teleport"},  # unknown event name
        {**click, "event_id": 900003, "product_id": 99999999},  # dangling product
        dict(rows[5]),  # duplicate event id
    ]
    frame = pd.DataFrame(rows + bad + [{**rows[20], "event_id": 900004}])
    out.mkdir(parents=True, exist_ok=True)
    text = frame.to_csv(index=False)
    (out / "events.csv").write_text(text[: len(text) - 12])  # truncated last line
    return out / "events.csv", len(frame)


@pytest.fixture
def bad_raw(tiny_world_dir, tmp_path):
    raw = tmp_path / "raw"
    export_world(tiny_world_dir, raw, format="csv")
    (raw / "events.csv").unlink()
    path, n = _bad_events(tiny_world_dir, raw)
    return raw, n


def test_lenient_quarantines_every_bad_row_with_its_reason(bad_raw, tmp_path):
    raw, n_rows = bad_raw
    report = _ingest(raw, tmp_path / "world", "pseudonymise=false", "chunk_rows=50")
    counts = report.counts["events"]
    assert counts.input == n_rows and counts.accepted + counts.rejected == counts.input
    assert counts.rejected == 5
    quarantined = pd.concat([pd.read_parquet(p) for p in
                             sorted((report.quarantine / "events").glob("*.parquet"))])  # fmt: skip
    reasons = dict(zip(quarantined["_row"], quarantined["_reason"], strict=True))
    assert reasons[120].startswith("ts: not an integer")
    assert reasons[121].startswith("event_type: unknown event type 'teleport'")
    assert reasons[122].startswith("product_id: unknown product 99999999")
    assert reasons[123].startswith("event_id: duplicate event_id")  # its first is in chunk 0
    assert reasons[124].startswith("row: unreadable (truncated last line")
    assert set(quarantined["_file"]) == {str(raw / "events.csv")}
    assert len(load_tables(tmp_path / "world").events) == counts.accepted
    assert "rejected rows with their reasons" in report.summary()


def test_strict_names_file_row_and_field(bad_raw, tmp_path):
    raw, _ = bad_raw
    with pytest.raises(ValidationError) as err:
        _ingest(raw, tmp_path / "world", "pseudonymise=false", "mode=strict", "chunk_rows=50")
    e = err.value
    assert (e.source, e.table, e.row, e.field) == (str(raw / "events.csv"), "events", 120, "ts")
    assert "events.csv: events row 120" in str(e) and "not an integer" in str(e)
    assert not (tmp_path / "world" / "manifest.json").exists()
    assert not list((tmp_path / "world" / "events").glob("part-*.parquet"))


def test_a_json_line_that_does_not_parse_is_quarantined(tiny_world_dir, tmp_path):
    raw = tmp_path / "raw"
    export_world(tiny_world_dir, raw, format="jsonl")
    lines = (raw / "events.jsonl").read_text().splitlines(keepends=True)
    (raw / "events.jsonl").write_text("".join(lines[:30] + ['{"event_id": 5, "ts": \n'] +
                                              lines[30:60]))  # fmt: skip
    report = _ingest(raw, tmp_path / "world", "pseudonymise=false")
    assert report.counts["events"].input == 61 and report.counts["events"].rejected == 1
    rejected = pd.read_parquet(next((report.quarantine / "events").glob("*.parquet")))
    assert rejected["_row"].tolist() == [30]
    assert rejected["_reason"].iloc[0].startswith("row: unreadable (not JSON: Expecting value")


def test_a_csv_line_with_too_many_fields_is_quarantined_in_place(tiny_world_dir, tmp_path):
    raw = tmp_path / "raw"
    export_world(tiny_world_dir, raw, format="csv")
    lines = (raw / "events.csv").read_text().splitlines(keepends=True)
    extra = lines[40].rstrip("\n") + ",surplus\n"
    (raw / "events.csv").write_text("".join(lines[:41] + [extra] + lines[41:101]))
    report = _ingest(raw, tmp_path / "world", "pseudonymise=false", "chunk_rows=25")
    counts = report.counts["events"]
    assert (counts.input, counts.rejected, counts.accepted) == (101, 1, 100)
    rejected = pd.read_parquet(next((report.quarantine / "events").glob("*.parquet")))
    assert rejected["_row"].tolist() == [40]
    assert rejected["_reason"].iloc[0].startswith("row: unreadable (")
    assert "fields where the header has" in rejected["_reason"].iloc[0]
    events = load_tables(tiny_world_dir).events
    ingested = load_tables(tmp_path / "world").events
    assert sorted(ingested["event_id"]) == sorted(events.sort_values("event_id")["event_id"]
                                                  .head(100))  # fmt: skip


def test_appending_days_grows_vocabularies_and_keeps_old_codes(tiny_world_dir, tmp_path):
    tables = load_tables(tiny_world_dir)
    cut = int(np.quantile(tables.events["ts"], 0.5))
    withheld = tables.users["user_id"].iloc[:50]
    first = tmp_path / "day1"
    export_world(tiny_world_dir, first, format="parquet")
    pd.read_parquet(first / "users.parquet").pipe(lambda u: u[~u["user_id"].isin(withheld)]) \
        .to_parquet(first / "users.parquet")  # fmt: skip
    events = tables.events
    events[(events["ts"] < cut) & ~events["user_id"].isin(withheld)].to_parquet(
        first / "events.parquet"
    )
    second = tmp_path / "day2"
    export_world(tiny_world_dir, second, format="parquet")
    events[events["ts"] >= cut].to_parquet(second / "events.parquet")
    world = tmp_path / "world"
    one = _ingest(first, world, "pseudonymise=false")
    old = load_vocabs(world / "vocab")
    two = _ingest(second, world, "pseudonymise=false", "chunk_rows=3000")
    new = load_vocabs(world / "vocab")
    assert two.appended and two.already_present["users"] == len(tables.users) - 50
    assert np.array_equal(new["user"].ids[: old["user"].n_known], old["user"].ids)
    assert set(new["user"].ids[old["user"].n_known :]) == set(withheld)
    ids = old["user"].ids
    assert np.array_equal(new["user"].encode(ids), old["user"].encode(ids))
    total = one.counts["events"].accepted + two.counts["events"].accepted
    assert len(load_tables(world).events) == total == read_manifest(world)["counts"]["events"]
    again = _ingest(second, world, "pseudonymise=false")  # the same days once more
    assert again.counts["events"].accepted == 0
    assert set(again.counts["events"].reasons) == {"event_id: duplicate event_id"}
    assert len(json.loads((world / "manifest.json").read_text())["batches"]) == 3


def test_a_missing_column_names_the_file_and_the_mapping(example_raw, tmp_path):
    with pytest.raises(ValueError, match="no column 'user_id' for users.user_id"):
        _ingest(example_raw, tmp_path / "world", "pseudonymise=false")  # schema names: wrong


def test_iso_times_and_an_absent_optional_column(tiny_world_dir, tmp_path):
    raw = tmp_path / "raw"
    export_world(tiny_world_dir, raw, format="csv")
    events = pd.read_csv(raw / "events.csv")
    stamps = pd.to_datetime(events["ts"], unit="s", utc=True).dt.tz_convert("Asia/Shanghai")
    events.assign(ts=stamps.astype(str)).drop(columns="coupon_value").to_csv(
        raw / "events.csv", index=False
    )
    report = _ingest(raw, tmp_path / "world", "pseudonymise=false", "tables.events.time_unit=iso",
                     "++tables.events.columns.coupon_value=null")  # fmt: skip
    after = load_tables(tmp_path / "world").events
    before = load_tables(tiny_world_dir).events
    claim = (before["event_type"] == "coupon_claim").to_numpy()
    assert np.array_equal(after["ts"], before["ts"][~claim])  # claims need their coupon value
    claims = int(claim.sum())
    assert report.counts["events"].reasons == {"coupon_value: required for event type": claims}
