"""recsys-ingest's consent table: a platform's own labels and values mapped, bad rows quarantined
with file, row and field, user ids pseudonymised as the events', decisions appended across runs
(latest by time holds), key rotation, tombstones, and the service answering from the result."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from omegaconf import OmegaConf, open_dict

from recsys.cli import forget as forget_cli
from recsys.cli import ingest as ingest_cli
from recsys.cli.serve import build_app
from recsys.data.ingest import MappingError, source_from_dict
from recsys.data.ingest.export import export_world
from recsys.data.pseudonym import pseudonymise
from recsys.data.tables import load_tables, read_manifest
from recsys.data.validation import ValidationError
from recsys.privacy.consent import CONSENT_COLUMNS, ConsentBook, Decision, plant_opt_outs
from recsys.serving.consent import NO_CONSENT
from tests.conftest import compose_config

REPO = Path(__file__).resolve().parents[1]
KEY, NEW_KEY = "consent-secret", "consent-secret-2"
STRANGER = "9000000000000000001"  # a viewer the platform knows only from its consent log
# A platform's own consent log: its column names, labels, yes/no and 1/0, ISO times.
OWN = {
    "columns": {"user_id": "uid", "purpose": "scene", "channel": "via", "granted": "agreed",
                "ts": "at"},
    "values": {
        "purpose": {"个性化推荐": "personalisation", "personalized_ads": "personalisation",
                    "营销消息": "marketing", "优惠券": "coupons"},
        "channel": {"短信": "sms", "推送": "push", "站内": "in_app"},
        "granted": {"yes": "true", "no": "false", "opt_in": "true", "opt_out": "false"},
    },
    "time_unit": "iso",
}  # fmt: skip


@pytest.fixture(scope="module")
def raw(tiny_world_dir, tmp_path_factory) -> Path:
    """The tiny world exported in the example platform's layout, consent log included."""
    spec = importlib.util.spec_from_file_location("export_world", REPO / "experiments" /
                                                  "export_world.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("raw") / "raw"
    module.export_example(str(tiny_world_dir), str(out), "csv")
    return out


@pytest.fixture(scope="module")
def viewers(raw) -> list[str]:
    """Three raw ids of viewers with events."""
    events = pd.read_csv(raw / "events" / "part-00000.csv", dtype={"account_id": str})
    return events["account_id"].drop_duplicates().head(3).tolist()


def _ingest(source: Path, out: Path, *more: str, log: pd.DataFrame | None = None):
    """recsys-ingest with the example mapping; ``log`` replaces its consent table by ``OWN``."""
    cfg = compose_config("ingest", ["tables=example", f"source={source}", f"out_dir={out}",
                                    f"key={KEY}", "progress=false", *more])  # fmt: skip
    if log is not None:
        runs = len(list(out.parent.glob(f"{out.name}-consent-*")))
        path = out.parent / f"{out.name}-consent-{runs}.csv"
        log.to_csv(path, index=False)
        with open_dict(cfg):
            cfg.tables.consent = {"path": str(path), **OWN}
    return ingest_cli.run(cfg)


def _log(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["uid", "scene", "via", "agreed", "at"], dtype=str)


def _pseudonym(raw_id: str, key: str = KEY) -> int:
    return int(pseudonymise([raw_id], key)[0])


def test_labels_and_values_map_and_ids_are_the_events_pseudonyms(raw, viewers, tmp_path):
    a, b, c = viewers
    log = _log((a, "个性化推荐", "", "no", "2024-06-03 20:00:00+08:00"),
               (b, "personalized_ads", "", "0", "2024-06-03T12:00:00Z"),
               (c, "营销消息", "短信", "opt_out", "2024-06-03T12:00:00Z"),
               (c, "营销消息", "", "yes", "2024-06-03T11:00:00Z"),
               (STRANGER, "优惠券", "", "1", "2024-06-04T00:00:00Z"),
               (a, "个性化推荐", None, "opt_in", "2024-06-05T00:00:00Z"))  # fmt: skip
    report = _ingest(raw, tmp_path / "w", log=log)
    assert report.counts["consent"].accepted == 6 and report.n_rejected == 0
    table = pd.read_parquet(tmp_path / "w" / "consent.parquet")
    assert tuple(table.columns) == CONSENT_COLUMNS
    assert table["user_id"].tolist() == [_pseudonym(v) for v in (a, b, c, c, STRANGER, a)]
    assert table["purpose"].tolist() == ["personalisation"] * 2 + ["marketing"] * 2 + [
        "coupons", "personalisation"]  # fmt: skip
    assert table["channel"].tolist() == ["", "", "sms", "", "", ""]
    assert table["granted"].tolist() == [False, False, False, True, True, True]
    assert table["ts"].tolist() == [1717416000, 1717416000, 1717416000, 1717412400,
                                    1717459200, 1717545600]  # fmt: skip
    events = set(load_tables(tmp_path / "w").events["user_id"].tolist())
    assert {_pseudonym(v) for v in viewers} <= events and _pseudonym(STRANGER) not in events
    book = ConsentBook.read(tmp_path / "w")
    ab = [_pseudonym(a), _pseudonym(b)]
    assert book.allowed(ab, "personalisation").tolist() == [True, False]
    assert not book.allows(_pseudonym(c), "marketing", "sms")
    assert book.allows(_pseudonym(c), "marketing", "push")
    assert read_manifest(tmp_path / "w")["counts"]["consent"] == 6


def test_unquoted_yes_no_in_yaml_is_refused_naming_the_fix():
    spec = OmegaConf.create("path: consent\nvalues: {granted: {yes: true, no: false}}")
    with pytest.raises(MappingError, match=r"values.granted has a key read as a boolean.*'yes'"):
        source_from_dict("consent", OmegaConf.to_container(spec))
    quoted = OmegaConf.create("path: consent\nvalues: {granted: {'yes': true, 'no': false}}")
    mapped = source_from_dict("consent", OmegaConf.to_container(quoted)).values["granted"]
    assert mapped == {"yes": "True", "no": "False"}


BAD = [
    ("抽奖", "", "no", "2024-06-03T12:00:00Z", "purpose: unknown purpose '抽奖'"),
    ("营销消息", "邮件", "no", "2024-06-03T12:00:00Z", "channel: unknown channel '邮件'"),
    ("个性化推荐", "", "maybe", "2024-06-03T12:00:00Z", "granted: not a boolean 'maybe'"),
    ("个性化推荐", "", "no", "yesterday", "ts: not an integer 'yesterday'"),
    ("优惠券", "短信", "no", "2024-06-03T12:00:00Z",
     "channel: channel on a purpose without channels 'sms' for 'coupons'"),
]  # fmt: skip


def test_bad_rows_are_quarantined_with_file_row_and_field(raw, viewers, tmp_path):
    rows = [(viewers[0], *bad[:4]) for bad in BAD] + [(None, "个性化推荐", "", "no",
                                                       "2024-06-03T12:00:00Z")]  # fmt: skip
    log = _log((viewers[1], "个性化推荐", "", "no", "2024-06-03T12:00:00Z"), *rows)
    report = _ingest(raw, tmp_path / "w", log=log)
    counts = report.counts["consent"]
    assert (counts.input, counts.accepted, counts.rejected) == (7, 1, 6)
    assert counts.reasons["user_id: missing value"] == 1
    quarantined = pd.concat(
        pd.read_parquet(p) for p in (tmp_path / "w" / "quarantine").rglob("consent/*.parquet")
    )
    assert quarantined["_row"].tolist() == [1, 2, 3, 4, 5, 6]
    assert quarantined["_file"].str.endswith("w-consent-0.csv").all()
    for reason, expected in zip(quarantined["_reason"], [b[4] for b in BAD], strict=False):
        assert reason.startswith(expected), (reason, expected)
    assert len(pd.read_parquet(tmp_path / "w" / "consent.parquet")) == 1
    with pytest.raises(ValidationError, match=r"w2-consent-0.csv: consent row 1: field 'purpose':"
                                              r" unknown purpose '抽奖'"):  # fmt: skip
        _ingest(raw, tmp_path / "w2", "mode=strict", log=log)
    assert not (tmp_path / "w2" / "manifest.json").exists()


def _split_days(raw: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The export as two deliveries: every part file of events but the last, then the last."""
    first, second = tmp_path / "day1", tmp_path / "day2"
    for folder in (first, second):
        shutil.copytree(raw, folder)
    parts = sorted((raw / "events").iterdir())
    (first / "events" / parts[-1].name).unlink()
    for part in parts[:-1]:
        (second / "events" / part.name).unlink()
    return first, second


def test_later_runs_append_and_the_latest_decision_holds(raw, viewers, tmp_path):
    a, b, c = viewers
    first, second = _split_days(raw, tmp_path)
    world = tmp_path / "w"
    held = [(a, "个性化推荐", "", "no", "2024-06-03T12:00:00Z"),
            (b, "营销消息", "短信", "no", "2024-06-03T12:00:00Z")]  # fmt: skip
    _ingest(first, world, log=_log(*held, (c, "个性化推荐", "", "no", "2024-06-03T12:00:00Z")))
    # The platform exports its whole log again, with a re-grant and a decision older than one
    # already held.
    log = _log(*held, (a, "个性化推荐", "", "yes", "2024-06-04T12:00:00Z"),
               (c, "个性化推荐", "", "yes", "2024-06-02T12:00:00Z"))  # fmt: skip
    again = _ingest(second, world, log=log)
    assert again.appended and again.counts["events"].rejected == 0
    assert again.already_present["consent"] == 2 and again.counts["consent"].accepted == 4
    table = pd.read_parquet(world / "consent.parquet")
    assert len(table) == 5 and table["user_id"].tolist()[3:] == [_pseudonym(a), _pseudonym(c)]
    book = ConsentBook.read(world)
    ac = [_pseudonym(a), _pseudonym(c)]
    assert book.allowed(ac, "personalisation").tolist() == [True, False]
    assert not book.allows(_pseudonym(b), "marketing", "sms")


def test_key_rotation_rekeys_the_consent_of_viewers_without_events(raw, viewers, tmp_path):
    log = _log((viewers[0], "个性化推荐", "", "no", "2024-06-03T12:00:00Z"),
               (STRANGER, "优惠券", "", "no", "2024-06-03T12:00:00Z"),
               (STRANGER, "抽奖", "", "no", "2024-06-03T12:00:00Z"))  # fmt: skip
    world = tmp_path / "w"
    _ingest(raw, world, log=log)
    _ingest(raw, world, f"new_key={NEW_KEY}", log=log)
    table = pd.read_parquet(world / "consent.parquet")
    assert table["user_id"].tolist() == [_pseudonym(viewers[0], NEW_KEY),
                                         _pseudonym(STRANGER, NEW_KEY)]  # fmt: skip
    quarantined = pd.read_parquet(next((world / "quarantine").rglob("consent/*.parquet")))
    assert quarantined["user_id"].tolist() == [_pseudonym(STRANGER, NEW_KEY)]


def test_forgotten_viewers_consent_stays_out_on_reingestion(raw, viewers, tmp_path):
    a, b, _ = viewers
    first, second = _split_days(raw, tmp_path)
    log = _log((a, "个性化推荐", "", "no", "2024-06-03T12:00:00Z"),
               (b, "个性化推荐", "", "no", "2024-06-03T12:00:00Z"))  # fmt: skip
    world = tmp_path / "w"
    _ingest(first, world, log=log)
    gone = tmp_path / "gone.txt"
    gone.write_text(f"{_pseudonym(a)}\n")
    forget = [f"users={gone}", f"roots=[{world}]", "progress=false", f"out_dir={tmp_path / 'f'}"]
    forget_cli.run(compose_config("forget", forget))
    assert pd.read_parquet(world / "consent.parquet")["user_id"].tolist() == [_pseudonym(b)]
    again = _ingest(second, world, log=log)
    assert again.tombstoned["consent"] == 1 and again.already_present["consent"] == 1
    assert pd.read_parquet(world / "consent.parquet")["user_id"].tolist() == [_pseudonym(b)]


def _withdrawn_in_raw(raw: Path) -> set[int]:
    """Viewers whose latest personalisation decision in the raw log is an opt-out, read
    straight from the platform's file."""
    log = pd.read_csv(raw / "consent.csv", dtype={"account_id": str})
    log = log[log["scene"] == "个性化推荐"].sort_values("update_time", kind="stable")
    latest = log.groupby("account_id")["status"].last()
    return {_pseudonym(v) for v in latest.index[latest == "opt_out"]}


def test_a_viewer_opted_out_in_the_raw_log_gets_the_anonymous_ranking(raw, tmp_path):
    world = tmp_path / "w"
    _ingest(raw, world)
    withdrawn = _withdrawn_in_raw(raw)
    assert withdrawn and set(ConsentBook.read(world).withheld("personalisation")) == withdrawn
    cfg = compose_config("serve", [f"world.path={world}"])
    users = load_tables(world).users["user_id"].to_numpy(np.int64)
    other = int(next(u for u in users if int(u) not in withdrawn))
    with TestClient(build_app(cfg)) as client:
        for user in sorted(withdrawn):
            out = client.get("/recommend", params={"user": user, "k": 10}).json()
            assert out["cold_start"] and out["personalised_reason"] == NO_CONSENT
        out = client.get("/recommend", params={"user": other, "k": 10}).json()
        assert out["personalised_reason"] != NO_CONSENT


def test_a_book_written_by_recsys_round_trips_through_the_schema_mapping(tiny_world_dir, tmp_path):
    """Tables named as the schema: a consent file in ``CONSENT_COLUMNS`` (what ConsentBook
    writes) maps with nothing but its path."""
    raw = tmp_path / "raw"
    export_world(tiny_world_dir, raw, format="parquet")
    users = load_tables(tiny_world_dir).users["user_id"].to_numpy(np.int64)
    book = plant_opt_outs(users, share=0.1, seed=3, ts=100)
    book.decide(Decision(int(users[0]), "marketing", True, 200, "sms"))
    book.write(raw)
    more = ["progress=false", "pseudonymise=false", "++tables.consent.path=consent"]
    cfg = compose_config("ingest", [f"source={raw}", f"out_dir={tmp_path / 'w'}", *more])
    assert ingest_cli.run(cfg).counts["consent"].accepted == len(book.table())
    pd.testing.assert_frame_equal(ConsentBook.read(tmp_path / "w").table(), book.table())


def test_the_benchmark_input_ingests_clean_and_again_as_present(tmp_path):
    spec = importlib.util.spec_from_file_location("ingest_consent", REPO / "benchmarks" /
                                                  "ingest_consent.py")  # fmt: skip
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.make_input(tmp_path / "raw", 3000, 500)
    threads = pa.cpu_count(), pa.io_thread_count()  # the worker pins Arrow to one thread
    try:
        first = bench.worker(tmp_path / "raw", tmp_path / "w", 1000)
        again = bench.worker(tmp_path / "raw", tmp_path / "w", 1000)
    finally:
        pa.set_cpu_count(threads[0])
        pa.set_io_thread_count(threads[1])
    assert (first["accepted"], first["present"], first["rejected"]) == (3000, 0, 0)
    assert (again["accepted"], again["present"]) == (3000, 3000)
    assert len(pd.read_parquet(tmp_path / "w" / "consent.parquet")) == 3000
