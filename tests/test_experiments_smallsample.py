"""CR2 variances and Bell-McCaffrey degrees of freedom (``recsys.experiments.smallsample``):
against statsmodels where it has the estimator, against the textbook matrices where it has not,
and by simulation with few clusters of unequal size."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from recsys.experiments import Metric, Sample, analyse, compare
from recsys.experiments import smallsample as ss


def _rooms(rng, rooms: int, sigma: float = 1.0, ratio: bool = False) -> pd.DataFrame:
    """Viewers in rooms of log-normal sizes, a room effect, arms by room; ``ratio`` adds a
    Poisson denominator per viewer."""
    sizes = np.maximum(1, np.round(rng.lognormal(2.0, sigma, rooms))).astype(int)
    room = np.repeat(np.arange(rooms), sizes)
    y = 1.0 + rng.normal(0, 0.5, rooms)[room] + rng.normal(0, 1, len(room))
    frame = pd.DataFrame({"room": room, "arm": np.where(room % 2, "t", "c"), "y": y})
    if ratio:
        frame["x"] = rng.poisson(3.0, len(room)) + 1.0
        frame["y"] = frame["y"] * frame["x"]
    return frame


def _design(frame: pd.DataFrame, ratio: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(response, regressors [1, treated], weights) of the row-level (weighted) regression."""
    x = frame["x"].to_numpy() if ratio else np.ones(len(frame))
    X = sm.add_constant((frame["arm"] == "t").to_numpy(float))
    return frame["y"].to_numpy() / x, X, x


def _textbook_cr2(frame: pd.DataFrame, ratio: bool, X: np.ndarray | None = None) -> float:
    """CR2 variance of the last coefficient (the treatment's; the mean's when ``X`` is a
    constant): each cluster's whitened residuals times (I - H_gg)^(-1/2), from statsmodels'
    WLS fit."""
    y, X2, w = _design(frame, ratio)
    fit = sm.WLS(y, X2 if X is None else X, weights=w).fit()
    Xw, ew = fit.model.wexog, fit.wresid
    bread = np.linalg.inv(Xw.T @ Xw)
    meat = np.zeros_like(bread)
    for g in np.unique(frame["room"]):
        rows = (frame["room"] == g).to_numpy()
        vals, vecs = np.linalg.eigh(np.eye(rows.sum()) - Xw[rows] @ bread @ Xw[rows].T)
        score = Xw[rows].T @ (vecs @ np.diag(vals**-0.5) @ vecs.T) @ ew[rows]
        meat += np.outer(score, score)
    return float((bread @ meat @ bread)[-1, -1])


def _textbook_df(x_rows: np.ndarray, cluster: np.ndarray) -> float:
    """Bell-McCaffrey degrees of freedom of one arm's mean (weights ``x_rows``), from the
    eigenvalues of G'G with G_g = (I - H)_g' A_g X_g (X'X)^-1 under independent rows."""
    z = np.sqrt(x_rows)[:, None]
    total = float(x_rows.sum())
    H = z @ z.T / total
    cols = []
    for g in np.unique(cluster):
        rows = cluster == g
        vals, vecs = np.linalg.eigh(np.eye(rows.sum()) - H[np.ix_(rows, rows)])
        A = vecs @ np.diag(vals**-0.5) @ vecs.T
        cols.append((np.eye(len(z)) - H)[:, rows] @ A @ z[rows] / total)
    lam = np.linalg.eigvalsh(np.hstack(cols).T @ np.hstack(cols))
    return float(lam.sum() ** 2 / (lam**2).sum())


def test_single_units_equal_statsmodels_hc2_for_mean_and_ratio_metrics():
    rng = np.random.default_rng(0)
    for ratio in (False, True):
        frame = _rooms(rng, 300, ratio=ratio).assign(room=lambda f: np.arange(len(f)))
        metric = Metric("m", "y", "x" if ratio else None)
        est = analyse(frame, [metric], control="c").iloc[0]
        fit = sm.WLS(*_design(frame, ratio)).fit(cov_type="HC2")
        assert est["diff"] == pytest.approx(fit.params[1], rel=1e-10, abs=1e-12)
        assert est["se"] == pytest.approx(fit.bse[1], rel=1e-10)
    welch = stats.ttest_ind(*(frame.loc[frame["arm"] == a, "y"] for a in "tc"), equal_var=False)
    plain = analyse(frame, [Metric("m", "y")], control="c").iloc[0]
    assert (plain["p_value"], plain["df"]) == pytest.approx((welch.pvalue, welch.df), rel=1e-10)


def test_clustered_se_equals_textbook_cr2_and_df_bell_mccaffrey():
    rng = np.random.default_rng(1)
    for ratio in (False, True):
        frame = _rooms(rng, 16, ratio=ratio)
        metric = Metric("m", "y", "x" if ratio else None)
        est = analyse(frame, [metric], control="c", cluster="room").iloc[0]
        assert est["se"] ** 2 == pytest.approx(_textbook_cr2(frame, ratio), rel=1e-10)
        dfs, variances = [], []
        for arm in "tc":
            part = frame[frame["arm"] == arm]
            x = part["x"].to_numpy() if ratio else np.ones(len(part))
            x_g = pd.Series(x).groupby(part["room"].to_numpy()).sum().to_numpy()
            dfs.append(_textbook_df(x, part["room"].to_numpy()))
            assert ss.effective_df(x_g / x_g.sum()) == pytest.approx(dfs[-1], rel=1e-10)
            variances.append(_textbook_cr2(part, ratio, np.ones((len(part), 1))))
        assert est["df"] == pytest.approx(ss.welch_df(*variances, *dfs), rel=1e-8)
        assert est["method"] == "delta+cluster" and est["estimable"]


def test_equal_clusters_give_cr1_and_g_minus_one_degrees_of_freedom():
    rng = np.random.default_rng(2)
    room = np.repeat(np.arange(12), 5)
    frame = pd.DataFrame({"room": room, "arm": np.where(room % 2, "t", "c")})
    frame["y"] = rng.normal(0, 0.5, 12)[room] + rng.normal(0, 1, len(room))
    est = analyse(frame, [Metric("y", "y")], control="c", cluster="room").iloc[0]
    fit = sm.OLS(frame["y"].to_numpy(), sm.add_constant((frame["arm"] == "t").to_numpy(float)))
    cr0 = fit.fit(cov_type="cluster", cov_kwds={"groups": room, "use_correction": False})
    assert est["se"] ** 2 == pytest.approx(cr0.cov_params()[1, 1] * 6 / 5, rel=1e-10)
    assert ss.effective_df(np.full(6, 1 / 6)) == pytest.approx(5.0, rel=1e-12)
    assert 5.0 <= est["df"] <= 10.0


def test_denominator_held_by_few_units_counts_only_them():
    x = np.zeros(200)
    x[:10] = 2.0  # ten ordering viewers among 200
    assert ss.effective_df(ss.leverages(200, x)) == pytest.approx(9.0, rel=1e-12)
    one = np.zeros(200)
    one[0] = 3.0
    est = compare(Sample(np.arange(200.0), one), Sample(np.arange(200.0), x))
    assert not est.estimable and "one unit holds the whole denominator" in est.reason
    with pytest.raises(ValueError, match="negative"):
        compare(Sample(np.ones(3), -np.ones(3)), Sample(np.ones(3), np.ones(3)))


def _cr1(t: Sample, c: Sample) -> tuple[float, float, float]:
    """The former interval: CR1 (G / (G - 1)) per arm, Welch on the cluster counts."""
    v, dfs = [], []
    for s in (t, c):
        lin = (s.y - s.y.sum() / s.x.sum() * s.x) / s.x.mean()
        v.append(lin.var(ddof=1) / s.n)
        dfs.append(s.n - 1.0)
    diff = t.y.sum() / t.x.sum() - c.y.sum() / c.x.sum()
    return diff, float(np.sqrt(sum(v))), float(stats.t.ppf(0.975, ss.welch_df(*v, *dfs)))


def test_few_unequal_clusters_cover_at_95_where_cr1_runs_narrow():
    rng = np.random.default_rng(3)
    reps, effect, hits = 1_000, 0.1, np.zeros((2, 1_000), dtype=bool)
    for i in range(reps):
        arms = []
        for shift in (effect, 0.0):
            sizes = np.maximum(1, np.round(rng.lognormal(3.0, 1.0, 8)))
            y = [np.sum(1 + shift + rng.normal(0, 0.5) + rng.normal(0, 1, int(n))) for n in sizes]
            arms.append(Sample(np.array(y), sizes))
        est = compare(*arms, clustered=True)
        diff, se, crit = _cr1(*arms)
        hits[:, i] = est.ci_lo <= effect <= est.ci_hi, abs(diff - effect) <= crit * se
    cr2, cr1 = hits.mean(axis=1)
    assert 0.925 <= cr2 <= 0.975
    assert cr1 < cr2 - 0.03
