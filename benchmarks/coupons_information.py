"""What the coupon learner's viewer features know about the planted uplift, and what they miss.

    python benchmarks/coupons_information.py               # small, the shipped coupons.yaml
    python benchmarks/coupons_information.py world.preset=tiny world.n_days=4 \
        world.history_days=1 world.grant_days=2            # seconds

Arguments are ``recsys-coupons`` overrides. Runs the coupon study's market (``study.collect``:
history days, then randomised grants) into a temporary folder and asks, on held-out viewers
(``evaluate.split_viewers``, the study's split), how much of each tier's true effect per viewer
(``GrantData.expected``: what ``oracle_expected`` allocates by) a regression fitted on the
training viewers explains (R^2):

* from the profile features alone, with the last stage's quadratic ridge (``uplift.Ridge``,
  what ``features_ceiling`` fits), a linear ridge and a small MLP (is the form the limit?);
* from the profile plus one planted trait at a time: the true price sensitivity, the true
  purchasing power, and the viewer's own activity on the evaluated days (clicks and clicked
  value per day: what the oracle knows and no profile of the past can);
* how well the profile measures price sensitivity: the correlation of its rates with the truth,
  and what the room's coupon drops would add (claims per click on a product while its coupon
  was on offer, against claims per click).

Writes ``benchmarks/results/coupons_information.{json,md}`` (``coupons_information_<preset>``
for another preset) and prints the markdown.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from harness.command import recorded_command
from hydra import compose, initialize_config_module

from recsys.cli.coupons import config_of
from recsys.coupons.evaluate import split_viewers
from recsys.coupons.study import GrantData, collect
from recsys.coupons.uplift import Ridge
from recsys.data.timeline import pair_codes
from recsys.profiling.config import ProfileConfig
from recsys.profiling.features import shrunk_rate
from recsys.simulation.response import WorldTruth

RESULTS = Path(__file__).resolve().parent / "results"
TRAITS = ("true sensitivity", "true purchasing power", "activity on the evaluated days")
RATES = ("price_sensitivity", "coupon_claim_rate", "coupon_purchase_share",
         "price_question_share")  # fmt: skip


def r2(y: np.ndarray, p: np.ndarray) -> float:
    return float(1.0 - ((y - p) ** 2).mean() / y.var()) if y.var() > 0 else float("nan")


def mlp_predict(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int = 0,
                epochs: int = 100) -> np.ndarray:  # fmt: skip
    """Two hidden layers of 64, Adam with weight decay, on standardised inputs and target."""
    torch.manual_seed(seed)
    mean, scale = x.mean(0), np.where(x.std(0) > 0, x.std(0), 1.0)
    y_mean, y_scale = y.mean(), y.std() if y.std() > 0 else 1.0
    xt = torch.tensor((x - mean) / scale, dtype=torch.float32)
    yt = torch.tensor((y - y_mean) / y_scale, dtype=torch.float32)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.randperm(len(xt), generator=generator).split(256):
            opt.zero_grad()
            ((net(xt[rows]).squeeze(1) - yt[rows]) ** 2).mean().backward()
            opt.step()
    with torch.no_grad():
        out = net(torch.tensor((x_test - mean) / scale, dtype=torch.float32)).squeeze(1)
    return out.numpy().astype(np.float64) * y_scale + y_mean


def viewer_traits(truth: WorldTruth, data: GrantData) -> dict[str, np.ndarray]:
    """(rows, ·) each row's planted traits and its viewer's mean activity over their days."""
    user = data.rows["user_id"].to_numpy()
    pos = truth.users.get_indexer(user)
    _, inv = np.unique(user, return_inverse=True)
    days = np.bincount(inv)
    per_day = {c: np.bincount(inv, data.rows[c].to_numpy(np.float64)) / days
               for c in ("clicks", "clicked_value")}  # fmt: skip
    return {
        TRAITS[0]: truth.sensitivity[pos][:, None],
        TRAITS[1]: np.log(truth.power[pos])[:, None],
        TRAITS[2]: np.log1p(
            np.column_stack([per_day["clicks"][inv], per_day["clicked_value"][inv]])
        ),  # fmt: skip
    }


def explained(data: GrantData, truth: WorldTruth, held: np.ndarray, alpha: float,
              names: list[str]) -> dict:  # fmt: skip
    """Per tier, held-out viewers' R^2 of the expected true incremental GMV by each regressor."""
    x, (gmv, _) = data.row_x(), data.expected()
    traits = viewer_traits(truth, data)
    user = data.rows["user_id"].to_numpy()
    test_viewer = np.isin(user, data.features.user_id[held])
    out = {}
    for j, name in enumerate(names):
        on = np.flatnonzero(data.offered[:, j])
        first = on[~pd.Series(user[on]).duplicated().to_numpy()]  # one row per viewer
        train, test = first[~test_viewer[first]], first[test_viewer[first]]
        y = gmv[:, j]
        if len(train) < 2 or len(test) < 2 or y[first].var() == 0:
            continue
        sets = {"profile": x} | {f"profile + {t}": np.hstack([x, v]) for t, v in traits.items()}
        sets["profile + all three"] = np.hstack([x, *traits.values()])
        row = {k: r2(y[test], Ridge.fit(v[train], y[train], alpha).predict(v[test]))
               for k, v in sets.items()}  # fmt: skip
        row["profile, linear ridge"] = r2(
            y[test], Ridge.fit(x[train], y[train], alpha, quadratic=False).predict(x[test])
        )
        row["profile, MLP"] = r2(y[test], mlp_predict(x[train], y[train], x[test]))
        out[name] = row | {"train_viewers": int(len(train)), "test_viewers": int(len(test))}
    return out


def drop_clicks(truth: WorldTruth, events: pd.DataFrame) -> pd.DataFrame:
    """The history's clicks, each marked whether its product's coupon was on offer in the room
    at that moment (the platform's own drop schedule)."""
    clicks = events.loc[events["event_type"] == "click", ["user_id", "session_id", "product_id",
                                                          "ts"]]  # fmt: skip
    s = truth.sessions.get_indexer(clicks["session_id"].fillna(-1).to_numpy(np.int64))
    p = truth.products.get_indexer(clicks["product_id"].fillna(-1).to_numpy(np.int64))
    known = (s >= 0) & (p >= 0)
    drop = np.full(len(clicks), -1, dtype=np.int64)
    ts = clicks["ts"].to_numpy(np.int64)[known]
    drop[known] = truth.drops.covering(pair_codes(s[known], p[known], len(truth.products)), ts)
    return clicks.assign(on_offer=drop >= 0)


def sensitivity_measured(data: GrantData, truth: WorldTruth, events: pd.DataFrame,
                         held: np.ndarray) -> dict:  # fmt: skip
    """How the profile's sensitivity rates track the planted one over viewers with history,
    and what claims per click on an offered coupon add (shrunk as the profile shrinks)."""
    f = data.features
    seen = f.x[:, f.names.index("has_history")] > 0
    sens = truth.sensitivity[truth.users.get_indexer(f.user_id)]
    out = {f"corr {r}": float(np.corrcoef(f.x[seen, f.names.index(r)], sens[seen])[0, 1])
           for r in RATES}  # fmt: skip
    clicks = drop_clicks(truth, events)
    claims = events.loc[events["event_type"] == "coupon_claim", "user_id"]
    count = {k: v.value_counts().reindex(f.user_id, fill_value=0).to_numpy(np.float64)
             for k, v in (("clicks", clicks["user_id"]), ("claims", claims),
                          ("offered", clicks.loc[clicks["on_offer"], "user_id"]))}  # fmt: skip
    m = ProfileConfig().shrinkage
    rate = {base: shrunk_rate(count["claims"], count[base], m) for base in ("clicks", "offered")}
    out["corr claims per click"] = float(np.corrcoef(rate["clicks"][seen], sens[seen])[0, 1])
    out["corr claims per click on an offered coupon"] = float(
        np.corrcoef(rate["offered"][seen], sens[seen])[0, 1]
    )
    out["share of clicks with a coupon on offer"] = float(clicks["on_offer"].mean())
    train, test = seen & ~held, seen & held
    for label, x in (("profile", f.x), ("profile + offered-coupon claim rate",
                                         np.column_stack([f.x, rate["offered"]]))):  # fmt: skip
        fit = Ridge.fit(x[train], sens[train], 1.0, quadratic=False)
        out[f"R2 of the true sensitivity, {label}"] = r2(sens[test], fit.predict(x[test]))
    return out


def markdown(record: dict) -> str:
    lines = [f"Command: `{record['command']}` ({record['seconds']:.0f} s on 2 shared CPU cores).",
             "", f"# What the coupon features know ({record['world']['preset']}, seed "
             f"{record['world']['seed']})", "",
             f"{record['world']['history_days']} history days, then "
             f"{record['world']['grant_days']} days of randomised grants. Held-out viewers' R^2 "
             "of each tier's true incremental GMV per viewer (averaged over their days: what "
             "`oracle_expected` allocates by), fitted on the training viewers. `profile` is the "
             "quadratic ridge of `features_ceiling` on the profile features.", ""]  # fmt: skip
    tiers = record["explained"]
    columns = [c for c in next(iter(tiers.values())) if not c.endswith("_viewers")]
    lines += [
        "| tier | viewers (train / test) | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for tier, row in tiers.items():
        cells = " | ".join(f"{row[c]:.3f}" for c in columns)
        lines.append(f"| {tier} | {row['train_viewers']} / {row['test_viewers']} | {cells} |")
    lines += [
        "",
        "## Price sensitivity as the profile measures it",
        "",
        "Viewers with history; rates shrunk with the profile's pseudo-count.",
        "",
    ]
    lines += [f"- {k}: {v:.3f}" for k, v in record["sensitivity"].items()]
    return "\n".join(lines) + "\n"


def main(overrides: list[str]) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with initialize_config_module(version_base="1.3", config_module="recsys.conf"):
        config = config_of(compose(config_name="coupons", overrides=overrides))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        market, data = collect(config.world, config.catalogue, config.propensities, tmp)
        history = pd.concat(
            [market.read_day(d)["events"] for d in range(config.world.history_days)],
            ignore_index=True,
        )
    held = split_viewers(data.features.user_id, config.held_out, config.seed)
    names = [t.name for t in config.catalogue.tiers]
    record = {
        "world": {k: getattr(config.world, k) for k in ("preset", "seed", "history_days",
                                                        "grant_days")},
        "explained": explained(data, market.truth, held, config.alpha, names),
        "sensitivity": sensitivity_measured(data, market.truth, history, held),
    }  # fmt: skip
    record["seconds"] = round(time.perf_counter() - began, 1)
    record["command"] = recorded_command("benchmarks/coupons_information.py", overrides)
    preset = config.world.preset
    name = "coupons_information" + ("" if preset == "small" else f"_{preset}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    text = markdown(record)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
