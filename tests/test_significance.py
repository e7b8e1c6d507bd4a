import numpy as np
import pytest
from scipy import stats

from recsys.evaluation import paired_test


@pytest.mark.parametrize("method", ["ttest", "randomization"])
def test_identical_inputs_give_no_difference(method):
    a = np.random.default_rng(0).random(50)
    res = paired_test(a, a.copy(), method=method, n_resamples=500)
    assert res.diff == 0.0 and res.ci_low == 0.0 and res.ci_high == 0.0
    assert res.p_value == pytest.approx(1.0)
    assert res.n == 50 and res.method == method


@pytest.mark.parametrize("method", ["ttest", "randomization"])
def test_clearly_different_inputs_give_small_p(method):
    rng = np.random.default_rng(1)
    b = rng.random(200)
    a = b + 0.3 + rng.normal(scale=0.1, size=200)
    res = paired_test(a, b, method=method, n_resamples=2000, seed=3)
    assert res.p_value < 1e-3
    assert res.mean_a - res.mean_b == pytest.approx(res.diff)
    assert res.ci_low < res.diff < res.ci_high and res.ci_low > 0.2


def test_ttest_agrees_with_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.random(80), rng.random(80)
    res = paired_test(a, b, confidence=0.9)
    ref = stats.ttest_rel(a, b)
    ci = ref.confidence_interval(confidence_level=0.9)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert (res.ci_low, res.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-12)


def test_randomization_agrees_with_scipy_and_is_seeded():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 2, size=120).astype(float)
    b = rng.integers(0, 2, size=120).astype(float)
    res = paired_test(a, b, method="randomization", n_resamples=3000, seed=11)
    ref = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=3000,
        rng=np.random.default_rng(11),
    )
    assert res.p_value == pytest.approx(ref.pvalue)
    again = paired_test(a, b, method="randomization", n_resamples=3000, seed=11)
    assert again == res


def test_small_sample_randomization_is_exact():
    # 6 pairs -> all 64 sign assignments; |mean diff| >= 1/3 in 32 of them.
    a = np.array([1, 0, 1, 1, 0, 1.0])
    b = np.array([0, 0, 1, 0, 0, 1.0])
    assert paired_test(a, b, method="randomization").p_value == pytest.approx(0.5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_test(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        paired_test(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="method"):
        paired_test(np.ones(3), np.ones(3), method="wilcoxon")
