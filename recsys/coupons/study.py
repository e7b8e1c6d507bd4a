"""Randomised grants in the market, and the uplift data they give.

``collect`` runs the market: ``history_days`` days without coupons (the profiles' history),
then ``grant_days`` days in which every viewer is drawn into a tier or none with the configured
propensities. Cards come from a slate policy that never reads wallets, so every logged day
also gives each viewer's true effect under every tier (``truth.true_effects``).

The result, ``GrantData``, holds one row per (viewer, granted day): features, arm, propensity,
observed GMV and cost, the day's exposure (``EXPOSURE``: cards shown, their summed price,
clicks and clicked prices, which the coupon cannot move here) and the true (incremental GMV,
cost) under each tier; beside them each row's target per tier and its clicked cards
(``CLICK_COLUMNS``: what the conversion learner, ``recsys.coupons.conversion``, reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from recsys.coupons.data import Features, day_outcomes, user_features
from recsys.coupons.grants import CouponPolicy, FixedChooser, RandomisedChooser
from recsys.coupons.truth import day_cards, true_effects
from recsys.market import Market, MarketConfig, OraclePolicy, RandomPolicy
from recsys.market.coupons import CouponCatalogue

SLATES = ("oracle", "random")
# What the coupon cannot move in this market (arrivals and slates never read wallets, a click
# is drawn before any coupon counts): the day's cards, their prices, clicks, clicked prices.
EXPOSURE = ("cards", "card_value", "clicks", "clicked_value")
# A clicked card: its row in ``GrantData.rows``, when, what, at what price, and whether it sold
# with a granted coupon (``grant_id`` >= 0) or without.
CLICK_COLUMNS = ("row", "ts", "streamer_id", "product_id", "price", "purchase", "grant_id")


@dataclass(frozen=True)
class WorldConfig:
    preset: str = "small"
    seed: int = 0
    open_rate: float = 2.0
    slate_size: int = 10
    slates: str = "oracle"  # the slate policy beside the coupons: oracle | random
    history_days: int = 5
    grant_days: int = 6
    n_days: int | None = None  # days the world runs (default: the preset's)

    def __post_init__(self) -> None:
        if self.slates not in SLATES:
            raise ValueError(f"coupons world: slates must be one of {SLATES}, got {self.slates}")
        if self.history_days < 1 or self.grant_days < 2:
            raise ValueError("coupons world: history_days >= 1 and grant_days >= 2 needed")


@dataclass
class GrantData:
    features: Features
    rows: pd.DataFrame  # user_id, day, arm, propensity, gmv, cost, orders, then EXPOSURE
    true_gmv: np.ndarray  # (rows, K)
    true_cost: np.ndarray
    offered: np.ndarray  # (rows, K) bool
    first_ts: np.ndarray  # (rows,) the viewer's first request that day (-1: none)
    grant_ts: dict[int, int] = field(default_factory=dict)
    target: np.ndarray | None = None  # (rows, K) int64, each tier's target (catalogue.Targets)
    clicks: pd.DataFrame | None = None  # CLICK_COLUMNS, in (row, ts, position) order

    def expected(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, K) each viewer's true effects averaged over their days: what a perfect
        model of the viewer could know before a day (its cards are still to be drawn)."""
        _, inv = np.unique(self.rows["user_id"].to_numpy(), return_inverse=True)
        count = np.bincount(inv)[:, None]
        out = []
        for a in (self.true_gmv, self.true_cost):
            mean = np.stack([np.bincount(inv, a[:, j]) for j in range(a.shape[1])], axis=1)
            out.append((mean / count)[inv])
        return out[0], out[1]

    def row_x(self) -> np.ndarray:
        """(rows, F) each row's viewer features."""
        return self.features.x[np.searchsorted(self.features.user_id, self.rows["user_id"])]

    def select(self, mask: np.ndarray) -> GrantData:
        clicks = self.clicks
        if clicks is not None:
            new = np.cumsum(mask) - 1  # old row -> new row
            clicks = clicks.loc[mask[clicks["row"].to_numpy()]].reset_index(drop=True)
            clicks["row"] = new[clicks["row"].to_numpy()]
        return GrantData(self.features, self.rows.loc[mask].reset_index(drop=True),
                         self.true_gmv[mask], self.true_cost[mask], self.offered[mask],
                         self.first_ts[mask], self.grant_ts,
                         None if self.target is None else self.target[mask], clicks)  # fmt: skip


def slate_policy(market: Market, kind: str, seed: int):
    return OraclePolicy(market.truth, market.config.response) if kind == "oracle" else \
        RandomPolicy(seed=seed)  # fmt: skip


def collect(
    world: WorldConfig,
    catalogue: CouponCatalogue,
    propensities: dict[str, float],
    out_dir: str | Path,
) -> tuple[Market, GrantData]:
    """Run the market with randomised grants; the uplift data of the granted days."""
    config = MarketConfig(preset=world.preset, seed=world.seed, n_days=world.n_days,
                          open_rate=world.open_rate, slate_size=world.slate_size,
                          catalogue=catalogue)  # fmt: skip
    market = Market(config, Path(out_dir) / "market")
    if any(market.out.glob("state/day-*.pkl")):
        raise ValueError(f"coupons world: {market.out} already holds logged days; the study's "
                         f"grants are decided as it runs, so it needs a fresh folder")  # fmt: skip
    if world.history_days + world.grant_days > market.n_days:
        raise ValueError(f"coupons world: {world.history_days} + {world.grant_days} days asked, "
                         f"the {world.preset} world has {market.n_days}")  # fmt: skip
    window = market.world.config.chunk_window
    policy = CouponPolicy(slate_policy(market, world.slates, world.seed), FixedChooser({}),
                          catalogue, window, name="randomised_grants")  # fmt: skip
    market.run(policy, days=world.history_days, progress=True)
    history = [market.read_day(d)["events"] for d in range(world.history_days)]
    users = market.frames["users"]["user_id"].to_numpy(np.int64)
    features = user_features(pd.concat(history, ignore_index=True), market.frames["products"],
                             market.frames["streamers"], users)  # fmt: skip
    policy.chooser = RandomisedChooser(catalogue, propensities, seed=world.seed)
    market.run(policy, days=world.grant_days, progress=True)
    decisions = policy.decision_table()
    days = range(world.history_days, world.history_days + world.grant_days)
    parts = [_day_rows(market, policy, decisions, d, catalogue) for d in tqdm(days, "truth")]
    offsets = np.cumsum([0, *[len(p[0]) for p in parts]])
    for part, offset in zip(parts, offsets, strict=False):
        part[6]["row"] += offset
    data = GrantData(features, pd.concat([p[0] for p in parts], ignore_index=True),
                     *[np.vstack([p[i] for p in parts]) for i in (1, 2, 3)],
                     np.concatenate([p[4] for p in parts]),
                     {d: window(d)[0] for d in days}, np.vstack([p[5] for p in parts]),
                     pd.concat([p[6] for p in parts], ignore_index=True))  # fmt: skip
    return market, data


def _day_rows(market: Market, policy: CouponPolicy, decisions: pd.DataFrame, day: int,
              catalogue: CouponCatalogue) -> tuple:  # fmt: skip
    logs = market.read_day(day)
    targets = policy.targets[day]
    users = targets.user_id
    effects = true_effects(market.truth, day_cards(logs), catalogue, targets,
                           market.world.config.chunk_window(day)[0],
                           market.config.response)  # fmt: skip
    mine = decisions.loc[decisions["day"] == day].set_index("user_id").reindex(users)
    names = {t.name: j for j, t in enumerate(catalogue.tiers)}
    rows = day_outcomes(logs, users).reset_index(names="user_id")
    rows.insert(1, "day", day)
    rows.insert(2, "arm", mine["arm"].map(names).fillna(-1).to_numpy(np.int64))
    rows.insert(3, "propensity", mine["propensity"].to_numpy(np.float64))
    shown = day_cards(logs).merge(logs["impressions"][["request_id", "position", "click"]],
                                  on=["request_id", "position"])  # fmt: skip
    shown["clicked_value"] = shown["price"] * shown["click"]
    exposure = shown.groupby("user_id").agg(cards=("price", "size"), card_value=("price", "sum"),
                                            clicks=("click", "sum"),
                                            clicked_value=("clicked_value", "sum"))  # fmt: skip
    exposure = exposure.reindex(users).fillna(0.0)
    for name in EXPOSURE:
        rows[name] = exposure[name].to_numpy(np.float64)
    first = logs["requests"].groupby("user_id")["ts"].min().reindex(users).fillna(-1)
    clicks = shown.loc[shown["click"].to_numpy(bool)].merge(
        logs["impressions"][["request_id", "position", "purchase", "grant_id"]],
        on=["request_id", "position"])  # fmt: skip
    clicks["row"] = pd.Index(users).get_indexer(clicks["user_id"].to_numpy(np.int64))
    clicks = clicks.loc[clicks["row"] >= 0].sort_values(["row", "ts", "position"], kind="stable")
    return (
        rows,
        effects.gmv,
        effects.cost,
        targets.offered,
        first.to_numpy(np.int64),
        targets.target,
        clicks[list(CLICK_COLUMNS)].reset_index(drop=True),
    )
