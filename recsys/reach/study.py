"""The reach study: no-send, blast, a rule and the learned policy in the market, side by side.

1. **Explore**: the market runs ``explore_days`` days under ``RandomisedReach`` (each trigger
   sent with ``explore_share``, random consented channel, random send time): the randomised
   sends the learned policy learns from.
2. **Arms**: the explored market folder is copied once per arm and each copy runs the same
   ``days`` further days under its arm's policy. Every arm replays the explored days first
   (``Market`` resumes a folder by observing its logged days), so every arm starts from the
   same state, and the market's draws are keyed by (day, purpose): each arm meets the same
   viewers, arrivals and organic behaviour (common random numbers). A viewer's difference in
   entries (or GMV) between an arm and no-send is then the arm's incremental return visits
   (GMV) for that viewer, and the paired intervals over viewers are tight.
3. **The send-time experiment** runs the learned policy once more, with a hashed half of the
   viewers getting each message at its trigger's moment instead of the chosen time; open
   rates are compared between the halves as a ratio metric (delta method).

Intervals come from ``recsys.experiments.analysis.compare``: the paired ones as the mean of
per-viewer differences against a zero control (a one-sample t-interval, Welch degrees of
freedom ``n - 1``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from recsys.market import Market, MarketConfig, Policy, PopularityPolicy
from recsys.reach.copy import CopyTemplates, CopyWriter
from recsys.reach.decide import DecisionConfig
from recsys.reach.features import Clock
from recsys.reach.policy import (
    BlastPolicy,
    NoSendPolicy,
    RandomisedReach,
    ReachPolicy,
    RulePolicy,
)

ARMS = ("no_send", "blast", "rule", "learned", "learned_time")


@dataclass(frozen=True)
class StudyConfig:
    preset: str = "small"
    seed: int = 0
    explore_days: int = 7
    days: int | None = 14  # evaluated days after exploring (None: to the world's last day)
    explore_share: float = 0.1
    explore_lead_s: int = 6 * 3600
    time_share: float = 0.5  # of viewers at the trigger's moment in the send-time experiment
    open_rate: float = 1.0
    alpha: float = 0.05
    arms: tuple[str, ...] = ARMS
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        unknown = set(self.arms) - set(ARMS)
        if unknown or "no_send" not in self.arms:
            raise ValueError(f"StudyConfig.arms: from {ARMS}, with no_send; got {self.arms}")
        if self.explore_days < 1:
            raise ValueError("StudyConfig.explore_days must be >= 1: the learned policy learns "
                             "from the explored days")  # fmt: skip
        if not 0 < self.explore_share < 1 or not 0 < self.time_share < 1:
            raise ValueError("StudyConfig: explore_share and time_share must be in (0, 1)")


@dataclass
class ArmRun:
    name: str
    folder: Path
    days: list[int]
    policy: Policy


def _market(study: StudyConfig, folder: Path) -> Market:
    return Market(MarketConfig(preset=study.preset, seed=study.seed, open_rate=study.open_rate),
                  folder)  # fmt: skip


def _policy(arm: str, study: StudyConfig, market: Market, decision: DecisionConfig,
            templates: CopyTemplates) -> Policy:  # fmt: skip
    slates = PopularityPolicy()
    if arm == "no_send":
        return NoSendPolicy(slates)
    if arm == "blast":
        return BlastPolicy(slates)
    if arm == "rule":
        return RulePolicy(slates)
    share = study.time_share if arm == "learned_time" else 0.0
    return ReachPolicy(slates, market.view, decision=decision, clock=study.clock,
                       copy=CopyWriter(templates), time_share=share)  # fmt: skip


def run_study(study: StudyConfig, decision: DecisionConfig, templates: CopyTemplates,
              out_dir: str | Path, progress: bool = False) -> dict[str, ArmRun]:  # fmt: skip
    """Explore, then run every arm; the arms' runs (folders, evaluated days, policies)."""
    out = Path(out_dir)
    explore = out / "explore"
    shutil.rmtree(explore, ignore_errors=True)  # a market folder resumes: start afresh
    market = _market(study, explore)
    randomised = RandomisedReach(PopularityPolicy(), share=study.explore_share,
                                 max_lead_s=study.explore_lead_s, clock=study.clock,
                                 seed=study.seed)  # fmt: skip
    market.run(randomised, days=study.explore_days, progress=progress)
    last = market.n_days if study.days is None else min(market.n_days,
                                                        study.explore_days + study.days)
    runs = {}
    for arm in study.arms:
        folder = out / "arms" / arm
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(explore, folder)
        m = _market(study, folder)
        policy = _policy(arm, study, m, decision, templates)
        m.run(policy, days=last - study.explore_days, progress=progress)
        runs[arm] = ArmRun(arm, folder, list(range(study.explore_days, last)), policy)
    return runs


def arm_logs(run: ArmRun) -> dict[str, pd.DataFrame]:
    """The evaluated days' events (enter, purchase) and messages of one arm."""
    ev, msg = [], []
    for day in run.days:
        e = pd.read_parquet(run.folder / "events" / f"part-{day:05d}.parquet",
                            columns=["user_id", "event_type", "amount"])  # fmt: skip
        ev.append(e.loc[e["event_type"].isin(("enter", "purchase"))])
        msg.append(pd.read_parquet(run.folder / "messages" / f"part-{day:05d}.parquet"))
    decisions = pd.concat(run.policy.decisions, ignore_index=True) if run.policy.decisions \
        else pd.DataFrame()  # fmt: skip
    return {"events": pd.concat(ev, ignore_index=True),
            "messages": pd.concat(msg, ignore_index=True), "decisions": decisions}  # fmt: skip
