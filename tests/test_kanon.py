"""k-anonymous exports: every released group holds >= k users (a property over random tables),
generalisation before suppression, both reported, and recsys-profile's export."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.cli import profile
from recsys.cli.pipeline import compose_job
from recsys.privacy.kanon import (
    ANY,
    QuasiIdentifier,
    export_groups,
    k_anonymous,
    min_group_size,
    quasi_identifiers,
)

AGE = QuasiIdentifier(
    "age_band", ({"18-24": "18-34", "25-34": "18-34", "35-44": "35+", "45+": "35+"},)
)
REGION = QuasiIdentifier(
    "region", ({"华东": "南方", "华南": "南方", "华北": "北方", "东北": "北方"},)
)
SPEND = QuasiIdentifier("spend", (10.0, 50.0))
QIS = (AGE, REGION, QuasiIdentifier("gender"), SPEND)

rows = st.fixed_dictionaries({
    "age_band": st.sampled_from(["18-24", "25-34", "35-44", "45+"]),
    "region": st.sampled_from(["华东", "华南", "华北", "东北"]),
    "gender": st.sampled_from(["F", "M", "U"]),
    "spend": st.integers(min_value=0, max_value=199),
    "tag_id": st.sampled_from(["tag:a", "tag:b", "segment:0", "segment:1"]),
})  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=st.lists(rows, min_size=0, max_size=400),
    k=st.integers(min_value=1, max_value=60),
    max_suppressed=st.sampled_from([0.0, 0.05, 0.2]),
    qis=st.lists(st.sampled_from(QIS), min_size=1, max_size=4, unique_by=lambda q: q.column),
)
def test_every_released_group_has_at_least_k_users(table, k, max_suppressed, qis):
    frame = pd.DataFrame(table, columns=["age_band", "region", "gender", "spend", "tag_id"])
    out, report = export_groups(
        frame, qis, k=k, group_by=("tag_id",), max_suppressed=max_suppressed
    )
    assert (out["users"] >= k).all()
    assert report.min_group_size is None or report.min_group_size >= k
    assert report.users_released + report.users_suppressed == report.users_in == len(frame)
    assert out["users"].sum() == report.users_released and len(out) == report.groups_released
    # The audit on the released rows agrees, and at most max_suppressed was suppressed unless
    # every quasi-identifier was already "*".
    released, _ = k_anonymous(frame, qis, k=k, group_by=("tag_id",), max_suppressed=max_suppressed)
    audit = min_group_size(released, ["tag_id", *(q.column for q in qis)])
    assert audit is None or audit >= k
    all_any = all(report.levels[q.column] == q.n_levels - 1 for q in qis)
    assert all_any or report.users_suppressed <= max_suppressed * len(frame) + 1e-9


def test_generalisation_comes_before_suppression_and_both_are_reported():
    frame = pd.DataFrame({
        "age_band": ["18-24", "25-34"] * 30 + ["45+"] * 3,
        "region": ["华东", "华南", "华北"] * 21,
        "tag_id": ["tag:a"] * 63,
    })  # fmt: skip
    out, report = export_groups(frame, (AGE, REGION), k=20, group_by=("tag_id",))
    assert report.levels == {"age_band": 1, "region": 0}  # 18-34 / 35+ is enough
    assert report.steps == ["100.0% of users in groups < 20: age_band -> level 1"]
    assert out["age_band"].tolist() == ["18-34"] * 3 and out["users"].tolist() == [20, 20, 20]
    assert report.users_suppressed == 3 and report.groups_suppressed == 3  # the 35+ per region
    assert "3 users in 3 smaller groups suppressed" in report.summary()
    # A stricter suppression budget generalises further: region too, then age to "*".
    _, strict = export_groups(frame, (AGE, REGION), k=20, group_by=("tag_id",), max_suppressed=0)
    assert strict.users_suppressed == 0 and len(strict.steps) > 1


def test_a_cohort_smaller_than_k_never_leaves():
    frame = pd.DataFrame({"gender": ["F"] * 60 + ["M"] * 5, "tag_id": ["big"] * 60 + ["tiny"] * 5})
    out, report = export_groups(frame, (QuasiIdentifier("gender"),), k=50, group_by=("tag_id",))
    assert out.to_dict("records") == [{"tag_id": "big", "gender": ANY, "users": 60}]
    assert report.users_suppressed == 5


def test_bins_and_bad_levels():
    assert SPEND.generalise(pd.Series([3, 17, 120]), 1).tolist() == ["0-9", "10-19", "120-129"]
    assert SPEND.generalise(pd.Series([3, 17, 120]), 2).tolist() == ["0-49", "0-49", "100-149"]
    assert SPEND.generalise(pd.Series([3]), 3).tolist() == [ANY]
    with pytest.raises(ValueError, match="region: level 1 must be a mapping or a bin width"):
        quasi_identifiers({"region": ["south"]})
    with pytest.raises(ValueError, match=r"columns \['city'\]"):
        k_anonymous(pd.DataFrame({"x": [1]}), (QuasiIdentifier("city"),), k=2)


def test_recsys_profile_exports_k_anonymous_cohorts(tiny_world_dir, tmp_path):
    cfg = compose_job("profile", ["data=world", f"data.path={tiny_world_dir}", "segments=4",
                                  "export.k=50", f"out_dir={tmp_path}"])  # fmt: skip
    summary = profile.run(cfg)
    cohorts = pd.read_parquet(tmp_path / "export" / "cohorts.parquet")
    assert len(cohorts) and (cohorts["users"] >= 50).all()
    assert summary["export"]["min_group_size"] >= 50
    assert set(cohorts.columns) == {"tag_id", "age_band", "gender", "region", "users"}
    assert cohorts["tag_id"].str.startswith("segment:").any()
    assert (tmp_path / "export" / "report.json").is_file()
