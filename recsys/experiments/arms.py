"""An A/B test inside the market: ``SplitPolicy`` routes every decision to its unit's arm.

    exp = Experiment("ranker", {"control": 0.5, "treatment": 0.5})
    market = Market(MarketConfig(preset="tiny", start_day=1), "runs/ab")
    run_experiment(market, exp, {"control": PopularityPolicy(), "treatment": RandomPolicy()})
    report = ab_report(market.out, exp)                  # recsys.experiments.report

The market sees one policy. Behind it, ``Experiment.assign`` (the one assignment function the
service and the analysis call too) puts each unit in an arm and each decision goes to the
policy of its unit's arm:

* **viewer** experiments: a request, a coupon grant and a message trigger belong to their viewer;
* **room** experiments (an intervention inside a live room): the control arm's policy lays out
  every slate (which room gets which slot), and in each slot of a room in another arm that
  arm's policy picks which of the room's products fills it (its own order of the room's live
  products; the control's cards where it names too few). So a room's arm changes what the room
  shows and never how many slots it gets: rooms do not compete across arms, and the true effect
  is well defined. Room coupons and triggers belong to their room; order and product coupons
  to the control arm's policy.

Every arm's policy observes the whole day's logs, as the platform's models would.

**Exposure log** (``exposures/part-<day>.parquet``: ``unit``, ``experiment``, ``arm``, ``ts``,
``unit_kind``): a viewer is exposed by each request, a room by each card of it shown; one row
per unit and day, at its first exposure that day.

**The true effect** (``truth/arms/part-<day>.parquet``, with ``counterfactual=True``): every
arm's policy also answers every request, so each unit's slates under *each* arm are known; the
world's planted response model gives each card's true click and purchase probabilities
(``simulation.response.simulate_outcomes``, wallet coupons left out: exact for arms that grant
none). A metric's true value under an arm is its expected numerator summed over all exposed
units over its expected denominator (the unit count for a mean metric), as if that arm served
everyone; the true effect is the difference of those values: the population average treatment
effect that an A/B estimate targets, free of the outcome draws and of which units fell where.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.experiments.assignment import Design, Experiment
from recsys.market.checks import check_slates
from recsys.market.env import Market
from recsys.market.policy import CouponGrants, MarketView, Messages, Policy, Requests, Slates
from recsys.simulation.response import ResponseConfig, WorldTruth, simulate_outcomes

SHADOW_COLUMNS = ("request_id", "user_id", "position", "session_id", "streamer_id",
                  "product_id", "arm", "p_click", "p_buy", "price")  # fmt: skip


def _subset(requests: Requests, rows: np.ndarray, k: int | None = None) -> Requests:
    return Requests(requests.request_id[rows], requests.user_id[rows], requests.ts[rows],
                    k or requests.k)  # fmt: skip


class SplitPolicy(Policy):
    """One policy per arm of ``experiment`` behind the market's one ``Policy``; exposures (and,
    with ``counterfactual``, every arm's true card probabilities) written under ``out_dir``."""

    def __init__(
        self,
        experiment: Experiment,
        arms: Mapping[str, Policy],
        *,
        out_dir: str | Path,
        truth: WorldTruth | None = None,
        response: ResponseConfig | None = None,
        counterfactual: bool = True,
    ) -> None:
        if list(arms) != list(experiment.arm_names):
            raise ValueError(f"experiment {experiment.name!r}: policies for arms {list(arms)}, "
                             f"the experiment has arms {list(experiment.arm_names)}")  # fmt: skip
        if counterfactual and truth is None:
            raise ValueError("SplitPolicy: counterfactual truth needs the world's truth")
        self.experiment, self.policies = experiment, dict(arms)
        self.design = Design.of(experiment)
        self.out, self.truth = Path(out_dir), truth
        self.response, self.counterfactual = response or ResponseConfig(), counterfactual
        self.name = f"experiment {experiment.name}"
        self.day: int | None = None
        self._pending: dict[str, list[pd.DataFrame]] = {"exposures": [], "truth/arms": []}

    # -- routing ---------------------------------------------------------------------------

    def arm_of(self, units: np.ndarray) -> np.ndarray:
        """Arm index per unit; outside the experiment's traffic the control's (0)."""
        return np.maximum(self.experiment.assign(units), 0)

    def grant_coupons(self, viewers: np.ndarray, day: int, market: MarketView) -> CouponGrants:
        self.day, parts = day, []
        by_viewer = self.experiment.unit == "viewer"
        viewer_arm = self.arm_of(viewers) if by_viewer else None
        for i, policy in enumerate(self.policies.values()):
            mine = viewers[viewer_arm == i] if by_viewer else viewers
            g = policy.grant_coupons(mine, day, market)
            if not by_viewer:  # a room coupon is its room's decision; the rest the control's
                scope = np.array([market.catalogue.tiers[market.catalogue.index(t)].scope
                                  for t in g.tier], dtype=object)  # fmt: skip
                room = scope == "streamer"
                target_arm = self.arm_of(np.where(room, g.target_id, 0))
                keep = np.where(room, target_arm == i, i == 0)
                g = CouponGrants(g.user_id[keep], g.tier[keep], g.target_id[keep])
            parts.append(g)
        return CouponGrants(*(np.concatenate([getattr(g, f) for g in parts])
                              for f in ("user_id", "tier", "target_id")))  # fmt: skip

    def notify(self, triggers: pd.DataFrame, market: MarketView) -> Messages:
        column = "user_id" if self.experiment.unit == "viewer" else "streamer_id"
        arm = self.arm_of(triggers[column].to_numpy(np.int64))
        parts = [policy.notify(triggers.loc[arm == i], market)
                 for i, policy in enumerate(self.policies.values())]  # fmt: skip
        return Messages(*(np.concatenate([getattr(m, f) for m in parts])
                          for f in ("trigger_id", "channel", "ts")))  # fmt: skip

    def observe(self, logs: dict[str, pd.DataFrame]) -> None:
        for policy in self.policies.values():
            policy.observe(logs)
        if self.day is not None and self._pending["exposures"]:
            self._write(self.day)

    # -- slates ----------------------------------------------------------------------------

    def recommend(self, requests: Requests, market: MarketView) -> Slates:
        if self.experiment.unit == "viewer":
            served, shadows = self._by_viewer(requests, market)
        else:
            served, shadows = self._by_room(requests, market)
        cards = check_slates(self.name, requests, served, market)
        self._log_exposures(requests, cards)
        if self.counterfactual:
            self._log_truth(requests, shadows, market)
        return served

    def _answer(self, arm: str, requests: Requests, market: MarketView) -> Slates:
        """One arm's policy's answer, checked as the market would check it."""
        slates = self.policies[arm].recommend(requests, market)
        check_slates(f"{self.name}/{arm}", requests, slates, market)
        return slates

    def _by_viewer(self, requests: Requests, market: MarketView):
        """(served slates, every arm's slates for every request or None)."""
        arm = self.arm_of(requests.user_id)
        names = self.experiment.arm_names
        session = np.full((len(requests), requests.k), -1, dtype=np.int64)
        product = session.copy()
        shadows = {}
        for i, name in enumerate(names):
            rows = np.flatnonzero(arm == i)
            if self.counterfactual:
                shadows[name] = self._answer(name, requests, market)
                s, p = shadows[name].session_id[rows], shadows[name].product_id[rows]
            elif len(rows):
                answer = self._answer(name, _subset(requests, rows), market)
                s, p = answer.session_id, answer.product_id
            else:
                continue
            session[rows], product[rows] = s, p
        return Slates(session, product), shadows or None

    def _by_room(self, requests: Requests, market: MarketView):
        """The control's layout with each room's products picked by its arm's policy."""
        names = self.experiment.arm_names
        layout = self._answer(names[0], requests, market)
        indptr, _ = market.live_shelf(requests.ts)
        wide = _subset(requests, np.arange(len(requests)), int(max(1, np.diff(indptr).max(
            initial=1))))  # fmt: skip
        orders = {name: self._answer(name, wide, market) for name in names[1:]}
        streamer = market.sessions.set_index("session_id")["streamer_id"]
        room_arm = pd.Series(self.arm_of(streamer.to_numpy(np.int64)), index=streamer.index)
        served = _fill_rooms(layout, orders, names, room_arm)
        if not self.counterfactual:
            return served, None
        shadows = {names[0]: layout}
        for i, name in enumerate(names[1:], start=1):
            every = pd.Series(i, index=streamer.index)
            shadows[name] = _fill_rooms(layout, orders, names, every)
        return served, shadows

    # -- logs ------------------------------------------------------------------------------

    def _log_exposures(self, requests: Requests, cards: pd.DataFrame) -> None:
        if self.experiment.unit == "viewer":
            units, ts = requests.user_id, requests.ts
        else:
            units, ts = cards["streamer_id"].to_numpy(np.int64), cards["ts"].to_numpy(np.int64)
        log = self.design.exposures(units, ts, self.experiment.unit)
        self._pending["exposures"].append(log.assign(unit_kind=self.experiment.unit))

    def _log_truth(self, requests: Requests, shadows: dict[str, Slates], market) -> None:
        for arm, slates in shadows.items():
            shown = check_slates(self.name, requests, slates, market)
            out = simulate_outcomes(self.truth, shown, self.response)
            out = out.rename(columns={"p_conversion": "p_buy"}).assign(arm=arm)
            out["price"] = market.price.reindex(out["product_id"]).to_numpy(np.float64)
            self._pending["truth/arms"].append(out[list(SHADOW_COLUMNS)])

    def _write(self, day: int) -> None:
        """The day's exposures (first per unit) and counterfactual truth, each file atomic."""
        for table, parts in self._pending.items():
            if not parts:
                continue
            frame = pd.concat(parts, ignore_index=True)
            if table == "exposures":
                frame = frame.sort_values("ts", kind="stable").drop_duplicates(
                    ["unit", "experiment"]).reset_index(drop=True)  # fmt: skip
            path = self.out / table / f"part-{day:05d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(path.with_suffix(".tmp"), index=False)
            path.with_suffix(".tmp").replace(path)
        self._pending = {k: [] for k in self._pending}


def _fill_rooms(layout: Slates, orders: dict[str, Slates], names, room_arm: pd.Series) -> Slates:
    """``layout`` with the cards of each room whose arm is not the control replaced by that
    arm's order of the same live session's products (then the layout's own, unused ones)."""
    session, product = layout.session_id.copy(), layout.product_id.copy()
    arm = np.where(session >= 0, room_arm.reindex(session.ravel()).fillna(0).to_numpy()
                   .reshape(session.shape), 0).astype(np.int64)  # fmt: skip
    for i in np.flatnonzero((arm > 0).any(axis=1)).tolist():
        for s in np.unique(session[i][arm[i] > 0]).tolist():
            slots = np.flatnonzero(session[i] == s)
            order = orders[names[int(arm[i][slots[0]])]]
            picked = order.product_id[i][order.session_id[i] == s].tolist()
            own = [p for p in product[i][slots].tolist() if p not in picked]
            product[i][slots] = (picked + own)[: len(slots)]
    return Slates(session, product)


def run_experiment(
    market: Market,
    experiment: Experiment,
    arms: Mapping[str, Policy],
    *,
    days: int | None = None,
    counterfactual: bool = True,
    progress: bool = False,
) -> SplitPolicy:
    """Run ``days`` market days (default: to the world's last) with ``arms`` split by
    ``experiment``; logs, exposures and counterfactual truth land in ``market.out``."""
    policy = SplitPolicy(experiment, arms, out_dir=market.out, truth=market.truth,
                         response=market.config.response,
                         counterfactual=counterfactual)  # fmt: skip
    market.run(policy, days=days, progress=progress)
    return policy
