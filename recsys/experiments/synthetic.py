"""Monte-Carlo checks of the statistics on synthetic draws whose truth is known.

Each study draws many experiments from a planted model and reports how the methods behave:
error rates, coverage, variance reduction, power. The tests run them small, the benchmark
(``benchmarks/experiments.py``) at full size. The draws mimic live-commerce metrics where it
matters: GMV per viewer is zero for most viewers and log-normal for buyers (heavy right tail);
CVR is orders over clicks with viewers who click a varying number of times; rooms share a
random effect that correlates their viewers.

- ``peeking_study``: A/A (or A/B) experiments looked at after every day: how often the naive
  daily z-test and the confidence sequence ever reject (vectorised over experiments and looks).
- ``cuped_study``: variance and bias of the plain and CUPED estimates over replications
  (normal, or log-normal spend with its pre-period spend).
- ``ratio_coverage``: coverage of the delta-method interval of a CVR difference and lift.
- ``cluster_coverage``: room-randomised GMV per viewer, naive vs cluster-robust intervals.
- ``power_study``: simulated power of Welch's test beside ``power.power``.
- ``srm_study``: flag rates of the chi-square and sequential SRM checks.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from recsys.experiments.analysis import Sample, compare
from recsys.experiments.power import power
from recsys.experiments.sequential import halfwidth
from recsys.experiments.srm import CONCENTRATION, SRM_THRESHOLD, chi2_p_values, sequential_srm

Z95 = 1.959963984540054


def gmv_draws(rng: np.random.Generator, shape: tuple[int, ...], buy: float = 0.1) -> np.ndarray:
    """GMV per viewer: 0 unless the viewer buys (probability ``buy``), then log-normal with a
    median of 150 and sigma 1 (a long right tail, as order values have)."""
    amount = rng.lognormal(np.log(150.0), 1.0, size=shape)
    return np.where(rng.random(shape) < buy, amount, 0.0)


def _share(hits: np.ndarray) -> dict[str, float]:
    """A rejection or coverage rate with its Monte-Carlo standard error."""
    rate = float(np.mean(hits))
    return {"rate": rate, "mc_se": float(np.sqrt(rate * (1 - rate) / hits.size))}


def _difference(sums: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(difference of means, its variance) from per-arm sums and sums of squares of n units."""
    means = sums[:, 0] / n
    var = (sums[:, 1] - n * means**2) / (n - 1) / n
    return means[1] - means[0], var.sum(0)


def peeking_study(
    n_experiments: int = 2_000,
    looks: int = 14,
    per_look: int = 500,
    alpha: float = 0.05,
    tuning: float | None = None,
    effect: float = 0.0,
    seed: int = 0,
) -> dict:
    """A/A (or A/B: treatment GMV + ``effect``) experiments, ``per_look`` new viewers per arm a
    day, read daily: the share rejected at any look (naive z, confidence sequence) and at the
    last look alone (fixed horizon). ``tuning`` defaults to the final units (both arms)."""
    rng = np.random.default_rng(seed)
    tuning = tuning or 2.0 * looks * per_look
    sums = np.zeros((2, 2, n_experiments))  # arm x (sum, sum of squares) x experiment
    naive, seq = np.zeros((2, n_experiments), dtype=bool)
    for look in range(1, looks + 1):
        draws = gmv_draws(rng, (2, n_experiments, per_look))
        draws[1] += effect
        sums += np.stack([draws.sum(-1), (draws**2).sum(-1)], axis=1)
        diff, v = _difference(sums, look * per_look)
        naive |= (fixed := np.abs(diff) > Z95 * np.sqrt(v))  # fixed: the last look's verdict
        seq |= np.abs(diff) > halfwidth(v, 2 * look * per_look, alpha, tuning)
    meta = {"experiments": n_experiments, "looks": looks, "per_look_per_arm": per_look}
    rates = {"naive_any_look": naive, "sequential_any_look": seq, "fixed_horizon_last_look": fixed}
    return meta | {"tuning": tuning, "effect": effect} | {k: _share(v) for k, v in rates.items()}


def _bivariate(
    rng: np.random.Generator, n: int, rho: float, skewed: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(in-period, pre-period) values of a metric: standard normal with correlation ``rho``,
    or with ``skewed`` log-normal spend (exp of those normals, so a weaker correlation)."""
    pre = rng.standard_normal(n)
    now = rho * pre + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    return (np.exp(now), np.exp(pre)) if skewed else (now, pre)


def _cuped_rep(rng: np.random.Generator, n: int, rho: float, effect: float, skewed: bool):
    """One experiment: (squared correlation of metric and covariate, plain and CUPED rows of
    (diff, se, covered))."""
    (yc, cc), (yt, ct) = _bivariate(rng, n, rho, skewed), _bivariate(rng, n, rho, skewed)
    r2 = np.corrcoef(np.r_[yc, yt], np.r_[cc, ct])[0, 1] ** 2
    rows = []
    for t, c in ((Sample(yt + effect), Sample(yc)), (Sample(yt + effect, c=ct), Sample(yc, c=cc))):
        est = compare(t, c)
        rows.append((est.diff, est.se, est.ci_lo <= effect <= est.ci_hi))
    return r2, rows


def cuped_study(
    reps: int = 2_000,
    n_per_arm: int = 1_000,
    rho: float = 0.7,
    effect: float = 0.05,
    skewed: bool = False,
    seed: int = 1,
) -> dict:
    """Plain vs CUPED estimates of a planted ``effect`` over ``reps`` experiments whose metric
    correlates with its pre-period value (latent correlation ``rho``)."""
    rng = np.random.default_rng(seed)
    r2, rows = np.zeros(reps), np.zeros((reps, 2, 3))
    for i in range(reps):
        r2[i], rows[i] = _cuped_rep(rng, n_per_arm, rho, effect, skewed)
    meta = {"reps": reps, "n_per_arm": n_per_arm, "rho": rho, "skewed": skewed, "effect": effect}
    return meta | _cuped_summary(r2, rows, effect)


def _cuped_summary(r2: np.ndarray, rows: np.ndarray, effect: float) -> dict:
    """Measured rho^2, variance reduction (Monte-Carlo and reported), bias and coverage."""
    plain, cuped = rows[:, 0].T, rows[:, 1].T
    var_p, var_c = plain[0].var(ddof=1), cuped[0].var(ddof=1)
    return {
        "measured_rho2": float(r2.mean()),
        "variance_reduction": float(1 - var_c / var_p),
        "se2_reduction": float(1 - np.mean(cuped[1] ** 2) / np.mean(plain[1] ** 2)),
        "bias_plain": float(plain[0].mean() - effect),
        "bias_cuped": float(cuped[0].mean() - effect),
        "bias_mc_se_cuped": float(np.sqrt(var_c / len(r2))),
        "coverage_plain": float(plain[2].mean()),
        "coverage_cuped": float(cuped[2].mean()),
    }


def _cvr_arm(rng: np.random.Generator, n: int, p: float) -> Sample:
    """Clicks (negative binomial, mean 3, many zeros) and orders ~ Binomial(clicks, p_i) with a
    viewer's own conversion p_i ~ Beta(mean p, concentration 10): CVR = orders / clicks."""
    clicks = rng.poisson(rng.gamma(1.0, 3.0, n)).astype(float)
    p_i = rng.beta(10 * p, 10 * (1 - p), n)
    return Sample(rng.binomial(clicks.astype(np.int64), p_i).astype(float), clicks)


def ratio_coverage(
    reps: int = 500, n_per_arm: int = 2_000, p: float = 0.10, effect: float = 0.01, seed: int = 2
) -> dict:
    """Coverage of the delta-method 95% intervals of a CVR difference (true ``effect``) and of
    its relative lift (true ``effect / p``)."""
    rng = np.random.default_rng(seed)
    diff_in, lift_in = np.zeros(reps, dtype=bool), np.zeros(reps, dtype=bool)
    for i in range(reps):
        est = compare(_cvr_arm(rng, n_per_arm, p + effect), _cvr_arm(rng, n_per_arm, p))
        diff_in[i] = est.ci_lo <= effect <= est.ci_hi
        lift_in[i] = est.lift_lo <= effect / p <= est.lift_hi
    return {
        "reps": reps,
        "n_per_arm": n_per_arm,
        "cvr": p,
        "effect": effect,
        "coverage_diff": _share(diff_in),
        "coverage_lift": _share(lift_in),
    }


def _rooms(rng: np.random.Generator, rooms: int, viewers: float, sd_room: float, shift: float):
    """Viewers of ``rooms`` rooms (room sizes 1 + Poisson): (room index, GMV-like value) with a
    room effect of standard deviation ``sd_room`` shared by its viewers."""
    sizes = 1 + rng.poisson(viewers - 1, rooms)
    room = np.repeat(np.arange(rooms), sizes)
    effect = rng.normal(0.0, sd_room, rooms)[room]
    return room, 1.0 + shift + effect + rng.normal(0.0, 1.0, len(room))


def cluster_coverage(
    reps: int = 500,
    rooms_per_arm: int = 100,
    viewers: float = 20.0,
    sd_room: float = 0.5,
    effect: float = 0.1,
    seed: int = 3,
) -> dict:
    """Room-randomised experiments on a per-viewer mean: the naive (viewers independent) and the
    cluster-robust (room sums) intervals' coverage of ``effect`` and their standard errors."""
    rng = np.random.default_rng(seed)
    hits, ses = np.zeros((2, reps), dtype=bool), np.zeros((2, reps))
    for i in range(reps):
        arms = [_rooms(rng, rooms_per_arm, viewers, sd_room, s) for s in (effect, 0.0)]
        naive = compare(*(Sample(y) for _, y in arms))
        sums = [Sample(np.bincount(r, y), np.bincount(r).astype(float)) for r, y in arms]
        robust = compare(*sums, clustered=True)
        for j, est in enumerate((naive, robust)):
            hits[j, i], ses[j, i] = est.ci_lo <= effect <= est.ci_hi, est.se
    return {
        "reps": reps,
        "rooms_per_arm": rooms_per_arm,
        "viewers_per_room": viewers,
        "sd_room": sd_room,
        "effect": effect,
        "coverage_naive": _share(hits[0]),
        "coverage_cluster": _share(hits[1]),
        "mean_se_naive": float(ses[0].mean()),
        "mean_se_cluster": float(ses[1].mean()),
    }


def power_study(
    effects: tuple[float, ...] = (0.05, 0.1, 0.15),
    n_per_arm: int = 1_000,
    sd: float = 1.0,
    reps: int = 2_000,
    alpha: float = 0.05,
    seed: int = 4,
) -> list[dict]:
    """Per effect: ``power.power``'s prediction and the rejection rate of Welch's test over
    ``reps`` simulated experiments (normal metric, vectorised)."""
    rng = np.random.default_rng(seed)
    out = []
    for effect in effects:
        t, c = rng.normal(effect, sd, (reps, n_per_arm)), rng.normal(0.0, sd, (reps, n_per_arm))
        vt, vc = t.var(1, ddof=1) / n_per_arm, c.var(1, ddof=1) / n_per_arm
        df = (vt + vc) ** 2 / (vt**2 / (n_per_arm - 1) + vc**2 / (n_per_arm - 1))
        stat = (t.mean(1) - c.mean(1)) / np.sqrt(vt + vc)
        rejected = 2 * stats.t.sf(np.abs(stat), df) < alpha
        out.append(
            {
                "effect": effect,
                "n_per_arm": n_per_arm,
                "sd": sd,
                "reps": reps,
                "predicted": power(effect, n_per_arm, sd, alpha),
                "simulated": _share(rejected),
            }
        )
    return out


def srm_study(
    reps: int = 2_000,
    n_total: int = 200_000,
    true_share: float = 0.5,
    looks: int = 14,
    threshold: float = SRM_THRESHOLD,
    concentration: float = CONCENTRATION,
    seed: int = 5,
) -> dict:
    """A 50/50 experiment whose first arm truly receives ``true_share`` of ``n_total`` units,
    arriving over ``looks`` days: how often each SRM check flags it."""
    rng = np.random.default_rng(seed)
    daily = rng.multinomial(n_total // looks, [true_share, 1 - true_share], size=(reps, looks))
    cumulative = np.cumsum(daily, axis=1)
    p_daily = chi2_p_values(cumulative, [0.5, 0.5])
    seq = sequential_srm(cumulative, [0.5, 0.5], threshold, concentration)
    return {
        "reps": reps,
        "n_total": n_total - n_total % looks,
        "true_share": true_share,
        "looks": looks,
        "threshold": threshold,
        "concentration": concentration,
        "chi2_final": _share(p_daily[:, -1] < threshold),
        "chi2_any_look": _share((p_daily < threshold).any(1)),
        "sequential_any_look": _share(seq["flagged"][:, -1]),
    }
