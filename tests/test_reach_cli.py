"""`recsys-reach` end to end on the tiny world: the report, the messages table and its rules."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from recsys.cli.reach import configs_of, run
from recsys.reach.decide import REASONS


def _cfg(tmp_path, *extra):
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        return compose(config_name="reach", overrides=[
            "world.preset=tiny", "explore_days=2", "days=1", f"out_dir={tmp_path}", *extra])


def test_recsys_reach_writes_the_report_and_a_message_for_every_decision(tmp_path):
    record = run(_cfg(tmp_path))
    assert {"reach.json", "reach.md", "messages.parquet"} <= {p.name for p in tmp_path.iterdir()}
    saved = json.loads((tmp_path / "reach.json").read_text())
    assert set(saved["arms"]) == {"no_send", "blast", "rule", "learned", "learned_time"}
    assert saved["arms"]["no_send"]["messages"] == 0 and saved["arms"]["blast"]["messages"] > 0
    assert set(record["checks"]) >= {"keeps_entries", "keeps_gmv", "sends", "unsubscribes",
                                     "pushes_per_viewer_day", "send_time_open_rate"}  # fmt: skip
    table = pd.read_parquet(tmp_path / "messages.parquet")
    assert len(table) and set(table["reason_code"]) <= set(REASONS)
    assert table["reason"].str.len().gt(0).all()
    sent = table.loc[table["send"]]
    assert len(sent) == saved["arms"]["learned"]["messages"]
    assert sent["text"].str.len().gt(0).all() and not sent["text"].str.contains("[{}]").any()
    hours = (sent["ts"] // 3600 + 8) % 24
    assert not ((hours >= 22) | (hours < 8)).any()  # the shipped quiet hours
    assert (sent.groupby(["user_id", "channel"]).size().loc[:, "push"] <= 1).all() \
        if (sent["channel"] == "push").any() else True  # fmt: skip
    assert "| learned |" in (tmp_path / "reach.md").read_text()
    # the saved model replays the no-send arm's last day as a stream
    replayed = tmp_path / "replay"
    stats = run(_cfg(replayed, "mode=replay", f"replay.folder={tmp_path}/arms/no_send",
                     "replay.day=2", f"replay.model={tmp_path}/reach_model.pkl"))  # fmt: skip
    day = pd.read_parquet(replayed / "messages.parquet")
    assert stats["events"] > 0 and len(day) == sum(stats["triggers"].values()) > 0
    assert set(day["reason_code"]) <= set(REASONS) and stats["delay_ms"]["p99"] > 0
    assert (day.loc[day["send"], "ts"] >= day.loc[day["send"], "decided_ts"]).all()


def test_bad_reach_configs_are_refused_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match="send_time"):
        configs_of(_cfg(tmp_path, "decision.send_time=whenever"))
    with pytest.raises(ValueError, match="arms"):
        configs_of(_cfg(tmp_path, "arms=[learned]"))
    with pytest.raises(ValueError, match="replay: folder, day and model"):
        run(_cfg(tmp_path, "mode=replay"))
    with pytest.raises(ValueError, match="unknown fields"):
        configs_of(_cfg(tmp_path, "copy.templates.lapsing_buyer=[\"{nickname}\"]"))
