"""The claims' statistics: pooling, degrees of freedom, Welch-Satterthwaite, Holm, and the coverage of the 95 %
interval on simulated runs with a known difference and a known seed variance."""

import math

import numpy as np
import pandas as pd
import pytest

from prunebench import stats
from prunebench.claims import Evidence, compare_points
from prunebench.stats import Interval, SeedTerm, SeedVariance


def test_pooling_averages_variances_weighted_by_their_degrees_of_freedom():
    pooled = stats.pooled_variance([SeedVariance(4.0, 1), SeedVariance(1.0, 3)])
    assert pooled.value == pytest.approx((1 * 4.0 + 3 * 1.0) / 4) and pooled.df == 4
    assert pooled.value != pytest.approx(((1 * 2.0 + 3 * 1.0) / 4) ** 2)  # not the square of pooled sds (1.5625)
    assert stats.pooled_variance([]).df == 0


def test_one_trainings_evaluations_count_its_degrees_of_freedom_once():
    # a test-time knob: two seeds of one training evaluated at three budgets are one replicate (df 1), and a
    # second train budget with three seeds adds its own 2
    rows = pd.DataFrame([{"train_budget": 9, "eval_budget": k, "seed": s, "accuracy": 0.5 + 0.01 * k + 0.02 * s}
                         for k in (1, 2, 3) for s in (0, 1)]
                        + [{"train_budget": 5, "eval_budget": 5, "seed": s, "accuracy": a}
                           for s, a in enumerate((0.60, 0.62, 0.67))])
    v = stats.method_variance(rows, "accuracy", "m")
    first, second = 0.02 ** 2 / 2, np.var([0.60, 0.62, 0.67], ddof=1)
    assert v.df == 3 and v.value == pytest.approx((1 * first + 2 * second) / 3)


def test_welch_satterthwaite_against_a_hand_computation():
    # (2 + 1 + 0.5)^2 / (2^2/4 + 1^2/9): the bootstrap's part (df inf) adds to the sum only
    assert stats.welch_satterthwaite([(2.0, 4), (1.0, 9), (0.5, math.inf)]) == pytest.approx(12.25 / (1 + 1 / 9))
    assert stats.welch_satterthwaite([(0.5, math.inf)]) == math.inf
    assert stats.welch_satterthwaite([(1.0, 5), (0.0, 0)]) == pytest.approx(5)  # an unmeasured part adds nothing


def test_terms_of_one_variance_estimate_add_before_welch_satterthwaite():
    pooled = SeedVariance(1e-4, 10, "pooled")
    same = Interval(0.0, 0.0, stats.merge((SeedTerm(1 / 3, pooled), SeedTerm(1 / 3, pooled))))
    assert len(same.seed_terms) == 1 and same.df == pytest.approx(10)  # one estimate: its own df, not 20
    two = Interval(0.0, 0.0, (SeedTerm(1 / 3, pooled), SeedTerm(1 / 3, SeedVariance(1e-4, 10, "other"))))
    assert two.df == pytest.approx(20)  # two independent estimates of equal size: W-S doubles the df
    assert same.half_width == pytest.approx(stats.t_quantile(10) * math.sqrt(2 / 3 * 1e-4))


def test_t_quantiles():
    assert stats.t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert stats.t_quantile(8) == pytest.approx(2.306, abs=1e-3)
    assert stats.t_quantile(math.inf) == pytest.approx(1.960, abs=1e-3)


def test_holm_against_a_hand_example():
    # m = 4 at alpha 0.05: sorted 0.005 <= 0.05/4, 0.01 <= 0.05/3, 0.03 > 0.05/2: stop there
    assert stats.holm([0.01, 0.04, 0.03, 0.005], alpha=0.05) == [True, False, False, True]
    assert stats.holm([0.02, 0.04], alpha=0.05) == [True, True]      # 0.02 <= 0.025, then 0.04 <= 0.05
    assert stats.holm([0.03, 0.04], alpha=0.05) == [False, False]    # each alone would pass at 0.05


def test_an_estimate_uses_its_own_variance_only_with_enough_degrees_of_freedom():
    own, pooled, parent = SeedVariance(4e-4, 2, "m"), SeedVariance(1e-4, 12, "pooled"), SeedVariance(2e-4, 9, "p")
    assert stats.choose(own, None, pooled) == pooled
    assert stats.choose(SeedVariance(4e-4, 8, "m"), None, pooled).source == "m"
    assert stats.choose(stats.UNMEASURED, parent, pooled) == parent  # a derived method: its parent's, with 9 df
    assert stats.choose(own, None, stats.UNMEASURED) == own          # no pool: the df there are (t at 2 df)
    assert stats.choose(stats.UNMEASURED, None, stats.UNMEASURED) == stats.UNMEASURED


def test_the_bootstrap_variance_of_a_paired_mean():
    rng = np.random.default_rng(0)
    a, b = (rng.random(2000) < 0.8).astype(float), (rng.random(2000) < 0.7).astype(float)
    assert stats.bootstrap_variance(a, b) == pytest.approx(np.var(a - b) / 2000, rel=0.15)
    assert stats.bootstrap_variance(a, a - 1) == 0.0  # a constant difference: nothing to resample


def test_one_sided_p_values_agree_with_the_interval():
    d = Interval(0.03, 1e-4, (SeedTerm(0.5, SeedVariance(2e-4, 4, "m")),))
    assert (d.p_above() < stats.ALPHA) == (d.low > 0) and (d.p_below() < stats.ALPHA) == (d.high < 0)
    assert d.p_above() == pytest.approx(stats.t_above(0.03 / d.se, d.df))
    assert Interval(0.01, 0.0).p_above() == 0.0 and Interval(0.01, 0.0).p_below() == 1.0


# ---------------------------------------------------------------- coverage

IMAGES, SEEDS, SEED_SD, SHARED = 800, 3, 0.02, 0.8
MEANS = {"a": 0.80, "b": 0.78, "c": 0.75, "d": 0.85, "e": 0.70}  # a - b = 2 pt; c, d, e add to the pool
TRUTH = MEANS["a"] - MEANS["b"]


def _run(rng) -> Interval:
    """One simulated benchmark: a fresh test set, three seeds of five methods; A - B's interval.

    Image i is right for a run with threshold t when its difficulty is below t: the difficulty is the image's own
    (shared by every run) for SHARED of the images, a fresh one per run for the rest; both are uniform, so a run's
    expected accuracy is t exactly, and t = the method's mean + a seed effect of sd SEED_SD."""
    difficulty = rng.random(IMAGES)
    rows, records = [], {}
    for method, mean in MEANS.items():
        for seed in range(SEEDS):
            own = np.where(rng.random(IMAGES) < SHARED, difficulty, rng.random(IMAGES))
            correct = (own < mean + SEED_SD * rng.standard_normal()).astype(float)
            rows.append({"method": method, "train_budget": 1.0, "eval_budget": 1.0, "seed": seed,
                         "accuracy": correct.mean(), "macs_frac": 1.0, "num_blocks": 9, "dense_macs": 1.0})
            records[(method, seed)] = pd.DataFrame({"correct": correct, "macs": np.ones(IMAGES)})
    ev = Evidence(pd.DataFrame(rows), lambda row: records[(row["method"], row["seed"])])
    ((_, d),) = compare_points(ev, "a", "b", [("1", (1.0, 1.0), (1.0, 1.0))])
    return d


def _coverage(trials: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    return float(np.mean([d.low <= TRUTH <= d.high for d in (_run(rng) for _ in range(trials))]))


def test_the_95_percent_interval_covers_the_true_difference():
    # each method's own 2 df are too few: A and B use the pool over the five methods (10 df), t quantile
    d = _run(np.random.default_rng(1))
    assert [t.variance.source for t in d.seed_terms] == ["pooled"] and d.seed_terms[0].variance.df == 10
    coverage = _coverage(500)
    assert 0.93 <= coverage < 0.995, coverage


def test_coverage_fails_without_the_seed_part(monkeypatch):
    # the same runs with the seed variance taken out: test-set noise alone is far too narrow
    monkeypatch.setattr(Evidence, "seed_variance", lambda self, method, value="correct", own=False, train_budget=None: stats.UNMEASURED)
    assert _coverage(150) < 0.93
