"""The whole coupon study end to end, and its report.

``run_coupons``: randomised grants in the market (``study.collect``), uplift models fitted on
the training viewers, then on the held-out viewers: ranking quality against the truth, the
policy value of each allocation at one budget, and a paced day. Writes ``coupons.json``,
``coupons.md``, ``coupon_model.pkl`` (what the service's real-time trigger loads) and
``grant_data.pkl`` (the uplift data) into ``out_dir`` and returns the record.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from recsys.coupons.ab import run_ab
from recsys.coupons.allocate import AllocationRules
from recsys.coupons.evaluate import (
    LEARNERS,
    OTHERS,
    PENALTIES,
    POLICIES,
    Budgeting,
    exposure_balance,
    features_ceiling,
    fit_models,
    paced_day,
    policy_values,
    ranking_quality,
    split_viewers,
    tier_cost,
)
from recsys.coupons.grants import CouponPolicy
from recsys.coupons.pacing import PacingConfig
from recsys.coupons.policy import CouponModel, LearnedChooser, RuleChooser
from recsys.coupons.rules import RuleTiers
from recsys.coupons.study import GrantData, WorldConfig, collect, slate_policy
from recsys.coupons.trigger_truth import judge_on_days
from recsys.market.coupons import CouponCatalogue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CouponsConfig:
    catalogue: CouponCatalogue
    propensities: dict[str, float]
    rule_tiers: RuleTiers
    world: WorldConfig = field(default_factory=WorldConfig)
    learner: str = "cvr"  # the learner behind the allocation; all of LEARNERS are reported
    alpha: float = 30.0
    penalties: tuple[float, ...] = PENALTIES  # the conversion model's grid
    held_out: float = 0.3
    budget_per_viewer: float = 0.5  # yuan of expected coupon cost per viewer and day
    rules: AllocationRules = field(default_factory=AllocationRules)
    blanket_tier: str = "member_10"
    pacing: PacingConfig = field(default_factory=PacingConfig)
    ab_days: int = 0  # market days of the learned-vs-rule A/B after the study (0: none)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise ValueError(f"coupons: learner must be one of {LEARNERS}, got "
                             f"{self.learner!r}")  # fmt: skip
        if not self.budget_per_viewer > 0:
            raise ValueError(f"coupons: budget_per_viewer must be > 0, got "
                             f"{self.budget_per_viewer}")  # fmt: skip
        self.catalogue.index(self.blanket_tier)
        self.rule_tiers.check(self.catalogue)


def run_coupons(config: CouponsConfig, out_dir: str | Path) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    market, data = collect(config.world, config.catalogue, config.propensities, out)
    with open(out / "grant_data.pkl", "wb") as f:  # the uplift data, for any further study
        pickle.dump(data, f)
    train, test = _split(data, config)
    models = {k: fit_models(train, config.catalogue, k, config.alpha, config.seed,
                            config.penalties) for k in LEARNERS}  # fmt: skip
    quality = {k: ranking_quality(m, test) for k, m in models.items()}
    budgeting = Budgeting(config.budget_per_viewer, config.rules, config.rule_tiers,
                          config.blanket_tier, config.seed)  # fmt: skip
    costs = tier_cost(train, len(config.catalogue.tiers))
    ceiling = features_ceiling(train, config.catalogue, config.alpha)
    values = {k: policy_values(m, ceiling, test, budgeting, costs) for k, m in models.items()}
    model = models[config.learner]
    record = {
        "world": asdict(config.world),
        "tiers": [asdict(t) for t in config.catalogue.tiers],
        "learner": config.learner,
        "conversion_model": models["cvr"].fit,
        "viewer_days": {"train": len(train.rows), "held_out": len(test.rows)},
        "arms": data.rows["arm"].value_counts().sort_index().to_dict(),
        "exposure_by_arm": exposure_balance(data, config.catalogue),
        "tier_cost_per_grant": costs.tolist(),
        "ranking": quality,
        "policy_value": values[config.learner],
        "policy_value_by_learner": {
            k: {p: v[p]["gmv_per_yuan"] for p in POLICIES} for k, v in values.items()
        },  # fmt: skip
        "paced_day": paced_day(model, test, budgeting, config.pacing),
    }
    product = [t.name for t in config.catalogue.tiers if t.scope == "product"]
    if product:  # the real-time trigger's coupon, judged on the held-out days
        lam = record["paced_day"]["lam0"]
        record["trigger_truth"] = judge_on_days(market, model, test.rows, product[0], lam,
                                                config.seed)  # fmt: skip
    if config.ab_days > 0:
        record["ab"] = _ab(config, market, model, costs, out)
    with open(out / "coupon_model.pkl", "wb") as f:
        pickle.dump(saved_model(config, model, record["paced_day"]["lam0"], costs), f)
    (out / "coupons.json").write_text(json.dumps(record, indent=2, default=_plain))
    (out / "coupons.md").write_text(markdown(record))
    return record


def _split(data: GrantData, config: CouponsConfig) -> tuple[GrantData, GrantData]:
    """(training, held-out) grant data: the held-out viewers' days apart."""
    held = split_viewers(data.features.user_id, config.held_out, config.seed)
    test_mask = np.isin(data.rows["user_id"], data.features.user_id[held])
    train, test = data.select(~test_mask), data.select(test_mask)
    log.info("coupons: %d training and %d held-out viewer-days", len(train.rows), len(test.rows))
    return train, test


def saved_model(config: CouponsConfig, model: CouponModel, lam: float, costs) -> dict:
    """What ``coupon_model.pkl`` holds: the model and the day's dual price for the service's
    trigger; the rule tiers, their cost per grant, the budget and the study's length for
    ``recsys-experiment``'s coupon arms (``policy.coupon_arm``)."""
    return {"model": model, "lam": lam, "tier_cost": np.asarray(costs, np.float64),
            "rule_tiers": config.rule_tiers, "rules": config.rules,
            "budget_per_viewer": config.budget_per_viewer, "slates": config.world.slates,
            "study_days": config.world.history_days + config.world.grant_days,
            "world": {"preset": config.world.preset, "seed": config.world.seed,
                      "n_days": config.world.n_days},
            "seed": config.seed}  # fmt: skip


def _ab(config: CouponsConfig, market, model: CouponModel, costs: np.ndarray, out: Path) -> dict:
    """The learned allocation (treatment) against the rule tiers (control) on the days after
    the study, in a market that starts there with the study's events as the arms' history."""
    start = config.world.history_days + config.world.grant_days
    if start + config.ab_days > market.n_days:
        raise ValueError(f"coupons: the A/B needs days {start}..{start + config.ab_days - 1}; "
                         f"the {config.world.preset} world has {market.n_days}")  # fmt: skip
    history = [market.read_day(d)["events"] for d in range(start)]
    window = market.world.config.chunk_window
    rule = RuleChooser(config.rule_tiers, config.catalogue, model.features.profile, costs,
                       config.budget_per_viewer, config.seed)  # fmt: skip
    learned = LearnedChooser(model, config.budget_per_viewer, config.rules)
    arms = {arm: CouponPolicy(slate_policy(market, config.world.slates, config.world.seed),
                              chooser, config.catalogue, window, history, name=name)
            for arm, chooser, name in (("control", rule, "rule"),
                                       ("treatment", learned, "learned"))}  # fmt: skip
    log.info("coupons: A/B of the learned allocation against the rule tiers, days %d-%d", start,
             start + config.ab_days - 1)  # fmt: skip
    return run_ab(replace(market.config, start_day=start), arms, config.ab_days, out / "ab")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _iv(d: dict, digits: int = 3) -> str:
    return f"{d['value']:.{digits}f} [{d['low']:.{digits}f}, {d['high']:.{digits}f}]"


def markdown(record: dict) -> str:
    lines = [*_ranking_lines(record), *_policy_lines(record["policy_value"])]
    lines += ab_lines(record.get("ab"))
    lines += _paced_lines(record["paced_day"])
    lines += trigger_lines(record.get("trigger_truth"))
    return "\n".join(lines)


def _ranking_lines(record: dict) -> list[str]:
    w = record["world"]
    lines = [
        f"# Personalised coupons on `{w['preset']}` (seed {w['seed']})", "",
        f"{w['history_days']} history days, then {w['grant_days']} days of randomised grants "
        f"({record['viewer_days']['train']} training and {record['viewer_days']['held_out']} "
        f"held-out viewer-days); slates: {w['slates']}. Learner behind the allocation: "
        f"`{record['learner']}`. Exposure per viewer-day by arm (the DR nuisances read it; "
        "the coupon cannot move it): " + "; ".join(
            f"{arm} {e['cards']:.2f} cards, {e['clicks']:.3f} clicks"
            for arm, e in record["exposure_by_arm"].items()) + ".", "",
        "## Uplift ranking on held-out viewers (incremental GMV)", "",
        "Qini and AUUC on the observed outcomes of the randomised held-out viewer-days (Qini as "
        "a share of the Qini of a ranking by the true effect; AUUC 0.5 for a random ranking); "
        "against the truth: the share of the true effect a ranking by the prediction gathers "
        "over all cut-offs (truth AUUC; ~0.5 random, 1 perfect) and the correlations, per "
        "viewer-day and against each viewer's true effect averaged over their days.", "",
        "| learner | tier | Qini | AUUC | truth AUUC (day / viewer) | Pearson (day / viewer) "
        "| Spearman (day / viewer) |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for kind, tiers in record["ranking"].items():
        for tier, q in tiers.items():
            lines.append(
                f"| {kind} | {tier} | {q['qini']:.3f} | {q['auuc']:.3f} | "
                f"{q['truth_auuc']:.3f} / {q['truth_auuc_expected']:.3f} | "
                f"{q['pearson']:.3f} / {q['pearson_expected']:.3f} | "
                f"{q['spearman']:.3f} / {q['spearman_expected']:.3f} |"
            )
    cm = record["conversion_model"]
    return lines + ["", f"The conversion learner (`cvr`) chose the penalty {cm['penalty']:g} of "
                    "its grid by held-out log loss of purchases over viewer folds: " + ", ".join(
                        f"{k:g}: {v:.5f}" for k, v in cm["cv_log_loss"].items()) + "."]  # fmt: skip


def _policy_lines(pv: dict) -> list[str]:
    lines = ["", "## Policy value at equal budget (true incremental GMV per yuan of true cost)",
             "", "Each held-out day allocated under the same budget; each allocation scored by "
             "the planted truth of that day. `oracle_expected` allocates by each viewer's true "
             "effect averaged over their days (the most a model of the viewer can know); "
             "`oracle` by the day's own true effect (it knows which cards the viewer will "
             "see); `features_ceiling` by the learners' last regression fitted to the "
             "training viewers' true effects (the most these profile features carry). Rule, "
             "random and blanket budget at each tier's mean observed cost per "
             "grant; intervals: bootstrap over viewers.", "",
             "| policy | GMV per yuan [95%] | incremental GMV | true spend | budget "
             "| grants |", "|---|---|---|---|---|---|"]  # fmt: skip
    for p in POLICIES:
        v = pv[p]
        lines.append(
            f"| {p} | {_iv(v['gmv_per_yuan'], 2)} | {v['incremental_gmv']:.0f} | "
            f"{v['true_spend']:.0f} | {v['budget']:.0f} | {v['grants']} |"
        )
    return lines + [""] + [f"- learned / {o}: {_iv(pv[f'learned_over_{o}'])}" for o in OTHERS]


def _paced_lines(p: dict) -> list[str]:
    return ["", "## Paced day", "",
            f"Day {p['day']}: {p['arrivals']} arrivals decided online from the previous day's "
            f"dual price {p['lam0']:.3f}; committed spend {p['spend']:.1f} of "
            f"{p['budget']:.1f} ({100 * p['spend_share']:.1f}%), true expected cost "
            f"{p['true_spend']:.1f}, {p['grants']} grants.", ""]  # fmt: skip


def trigger_lines(t: dict | None) -> list[str]:
    if t is None:
        return []
    lines = ["", "## Real-time trigger against the truth", "",
             f"`{t['tier']}` at each hesitation (a click not followed by a purchase within "
             f"{t['wait_s']} s) of the held-out viewer-days without a day-start grant, over "
             f"{t['days']} days: {t['hesitations']} hesitations, {t['eligible']} on products "
             f"priced above the coupon. `HesitationTrigger.decide` at the dual price "
             f"{t['lam']:.3f} against granting every one (a random share's expectation) and "
             "the trigger's rule on the true effects (`oracle`: it knows which viewers will see "
             "the product again while the coupon is valid).", "",
             "| grants by | grants | true incremental GMV | true cost | GMV per yuan [95%] |",
             "|---|---|---|---|---|"]  # fmt: skip
    if t["eligible"] == 0:
        return [*lines[:4], "No hesitation on a product priced above the coupon: none judged.", ""]
    for name in ("trigger", "every", "oracle"):
        v = t[name]
        lines.append(f"| {name} | {v['grants']} | {v['incremental_gmv']:.0f} | "
                     f"{v['true_cost']:.0f} | {_iv(v['gmv_per_yuan'], 2)} |")  # fmt: skip
    lines.append("")
    if "trigger_over_every" in t:
        lines.append(f"- trigger / every: {_iv(t['trigger_over_every'])}")
    c, r = t["predicted_vs_true_gmv"], t["revisit"]
    predicted = "none" if r["predicted"] is None else f"{r['predicted']:.4f}"
    lines += [f"- predicted vs true incremental GMV per hesitation: Pearson {c['pearson']:.3f}, "
              f"Spearman {c['spearman']:.3f}",
              f"- chance of a click on the product while the coupon is valid: predicted "
              f"{predicted}, true {r['true_mean']:.4f} (mean over hesitations)", ""]  # fmt: skip
    return lines


AB_TITLE = "A/B in the market: learned allocation (treatment) vs rule tiers (control)"


def ab_lines(ab: dict | None, title: str = AB_TITLE) -> list[str]:
    """The markdown of a coupon A/B (``ab.run_ab``) under the heading ``title``."""
    if ab is None:
        return []
    lines = [
        "",
        f"## {title}",
        "",
        f"Days {ab['start_day']}-{ab['start_day'] + ab['days'] - 1}, viewers per arm "
        f"{ab['viewers']}; per viewer over the days, from the logs (Welch 95% interval) "
        "beside the true effect from the planted truth.",
        "",
        "| metric | estimate [95%] | p | true effect | covered |",
        "|---|---|---|---|---|",
    ]
    for name, m in ab["metrics"].items():
        lines.append(
            f"| {name} | {m['estimate']:.3f} [{m['low']:.3f}, {m['high']:.3f}] | "
            f"{m['p_value']:.3f} | {m['true_effect']:.3f} | {m['covered']} |"
        )
    return lines
