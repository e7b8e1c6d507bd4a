"""Bad input to the quality benchmark: single-event users, targets never seen in training and
empty stages are accounted for in counts, never a crash or a metric over nothing."""

from __future__ import annotations

import math

import pytest
import quality
from harness.split_notes import NothingToEvaluate


def _write(path, rows: dict[int, list[int]]) -> str:
    path.write_text("".join(f"{u} {i}\n" for u, items in rows.items() for i in items))
    return str(path)


def test_single_event_users_and_unseen_test_items_are_counted_and_metrics_stay_finite(tmp_path):
    rows = {u: [(u + j) % 10 + 1 for j in range(6)] for u in range(20)}  # every item in training
    rows.update({u: [u % 10 + 1] for u in range(20, 27)})  # one event each
    for u in range(15, 20):
        rows[u][-1] = 100 + u  # a test item no one else has
    path = _write(tmp_path / "mixed.txt", rows)
    report = quality.main(["--data-path", path, "--models", "popularity", "item_knn", "--quick",
                           "--out-dir", str(tmp_path / "out")])  # fmt: skip
    notes = " | ".join(report["split_notes"])
    assert "7 users with fewer than 3 events are kept for training only" in notes
    assert "5 of 20 test targets are items never seen" in notes
    for model in report["models"].values():
        assert all(math.isfinite(v) for v in model["test"].values() if isinstance(v, float))
    assert "kept for training only" in (tmp_path / "out" / "quality_file-mixed_full.md").read_text()


def test_data_with_nothing_to_evaluate_stops_with_the_account(tmp_path):
    path = _write(tmp_path / "short.txt", {u: [u + 1, u + 2] for u in range(12)})
    with pytest.raises(NothingToEvaluate, match=r"no validation and no test targets") as err:
        quality.main(["--data-path", path, "--models", "popularity", "--quick",
                      "--out-dir", str(tmp_path / "out")])  # fmt: skip
    assert "12 users with fewer than 3 events" in str(err.value)
    assert "24 training events from 12 users" in str(err.value)
