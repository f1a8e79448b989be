"""The arithmetic behind the claims' verdicts, on one page: seed variance, degrees of freedom, bootstrap,
intervals and multiplicity. numpy only at import (every method file imports the claims); SciPy inside functions.

An estimate's 95 % interval adds two variances: the test set's (SciPy's paired bootstrap over the test images,
treated as known: infinite degrees of freedom) and the seeds' (sample variances over replicate trainings,
pooled as variances, with their degrees of freedom). The quantile is Student's t at the Welch-Satterthwaite
degrees of freedom of that sum. A verdict over several points ("at every budget") takes Holm's step-down over
the points' one-sided tests. The model and its assumptions: docs/claims.md#the-noise-model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from statistics import NormalDist

import numpy as np

LEVEL = 0.95
ALPHA = (1 - LEVEL) / 2  # one-sided: a point holds when its two-sided 95 % interval lies above the boundary
MIN_DF = 8               # a method's own seed variance with fewer degrees of freedom gives way to the pooled one
BOOTSTRAP_RESAMPLES = 999


@dataclass(frozen=True)
class SeedVariance:
    """The variance of one run's value over training seeds, its degrees of freedom, whose replicates it comes
    from (a method's name, "pooled", ...) and what they all shared, the variance being conditional on it (e.g.
    seed 0's backbone). df 0: nothing replicated; df inf: known (a fixed reference)."""

    value: float
    df: float
    source: str = ""
    given: str = ""


FIXED = SeedVariance(0.0, math.inf, "fixed reference")  # the dense backbone every replicate starts from
UNMEASURED = SeedVariance(0.0, 0.0, "unmeasured")


def sample_variance(values) -> SeedVariance:
    """The sample variance (ddof 1) of one point's per-seed values, with n - 1 degrees of freedom."""
    x = np.asarray(values, dtype=float)
    return SeedVariance(float(x.var(ddof=1)), len(x) - 1) if len(x) >= 2 else UNMEASURED


def pooled_variance(parts, source: str = "pooled") -> SeedVariance:
    """Independent estimates of one common variance pooled: sum(df_i * s_i^2) / sum(df_i), with sum(df_i)
    degrees of freedom (variances are pooled, never standard deviations)."""
    parts = [p for p in parts if 0 < p.df < math.inf]
    df = sum(p.df for p in parts)
    return SeedVariance(sum(p.df * p.value for p in parts) / df, df, source) if df else SeedVariance(0.0, 0.0, source)


def same_models(parts, source: str = "") -> SeedVariance:
    """Sample variances of the same trained models evaluated at several budgets, averaged: they are one set of
    replicates, so their degrees of freedom are the trainings' (the largest), not the sum over evaluations."""
    parts = [p for p in parts if p.df > 0]
    if not parts:
        return UNMEASURED
    pooled = pooled_variance(parts, source)
    return SeedVariance(pooled.value, max(p.df for p in parts), source)


def method_variance(rows, column: str, source: str) -> SeedVariance:
    """One method's seed variance from its summary rows (train_budget, eval_budget, seed, `column`): per point
    the sample variance over seeds; points of one train budget share their models (`same_models`); the
    train budgets, independent trainings, pooled."""
    per_training = []
    for _, trained in rows.groupby("train_budget"):
        points = [sample_variance(g[column].dropna().to_numpy()) for _, g in trained.groupby("eval_budget")]
        per_training.append(same_models(points, source))
    return pooled_variance(per_training, source)


def seed_variances(rows, column: str, derived=(), pool: bool = True, given: str = ""):
    """Each method's own seed variance of `column` in summary `rows`, and the pool across the methods that train
    (`derived` ones repeat their parent's trainings: left out); `pool` False: none (a cost's spread is each
    controller's own). `given`: what every replicate shared, e.g. seed 0's backbone."""
    own = {m: replace(method_variance(g, column, m), given=given) for m, g in rows.groupby("method")}
    pooled = pooled_variance([v for m, v in own.items() if m not in derived]) if pool else UNMEASURED
    return own, replace(pooled, given=given)


def choose(own: SeedVariance, parent: SeedVariance | None, pooled: SeedVariance) -> SeedVariance:
    """The variance an estimate uses: the method's own with at least MIN_DF degrees of freedom, else its parent's
    (a derived method runs the parent's models) with as many, else the pool across methods, else whatever
    degrees of freedom there are (the t quantile makes a small df a wide interval)."""
    for candidate in (own, parent):
        if candidate is not None and candidate.df >= MIN_DF:
            return candidate
    candidates = [c for c in (pooled, own, parent) if c is not None and c.df > 0]
    return max(candidates, key=lambda c: c.df) if candidates else UNMEASURED


@dataclass(frozen=True)
class SeedTerm:
    """One estimate's seed part: coef x variance.value (coef 1/seeds; interpolation weights enter squared)."""

    coef: float
    variance: SeedVariance


def merge(terms) -> tuple[SeedTerm, ...]:
    """Terms of one variance estimate add before Welch-Satterthwaite: they are not independent estimates."""
    coefs: dict[SeedVariance, float] = {}
    for t in terms:
        coefs[t.variance] = coefs.get(t.variance, 0.0) + t.coef
    return tuple(SeedTerm(c, v) for v, c in coefs.items())


def welch_satterthwaite(parts) -> float:
    """Degrees of freedom of a sum of independent variance estimates, parts (variance, df):
    (sum v)^2 / sum(v^2 / df); a part known exactly (df inf) adds to the sum only; inf when all are exact."""
    parts = [(v, d) for v, d in parts if v > 0]
    if any(d <= 0 for _, d in parts):
        raise ValueError("a positive variance needs positive degrees of freedom")
    denominator = sum(v * v / d for v, d in parts if math.isfinite(d))
    return sum(v for v, _ in parts) ** 2 / denominator if denominator > 0 else math.inf


@lru_cache(maxsize=4096)
def t_quantile(df: float, level: float = LEVEL) -> float:
    """The two-sided `level` quantile of Student's t at `df` degrees of freedom (the normal one at inf)."""
    if math.isinf(df):
        return NormalDist().inv_cdf(0.5 + level / 2)
    from scipy import stats  # lazily: scipy.stats takes ~1 s to import

    return float(stats.t.ppf(0.5 + level / 2, df))


def t_above(x: float, df: float) -> float:
    """P(T > x), T Student's t at `df` (normal at inf): a one-sided p-value."""
    if math.isinf(df):
        return 1 - NormalDist().cdf(x)
    from scipy import stats

    return float(stats.t.sf(x, df))


def bootstrap_variance(a: np.ndarray, b: np.ndarray, rng_seed: int = 0) -> float:
    """Test-set variance of mean(a - b) over the same images: SciPy's paired bootstrap's standard error, squared;
    0 when a - b is one constant (nothing to resample)."""
    if np.ptp(a - b) == 0:
        return 0.0
    from scipy import stats

    res = stats.bootstrap((a, b), lambda x, y, axis=-1: (x - y).mean(axis=axis), paired=True,
                          n_resamples=BOOTSTRAP_RESAMPLES, batch=100, method="percentile",
                          random_state=np.random.default_rng(rng_seed))
    return float(res.standard_error) ** 2


@dataclass(frozen=True)
class Interval:
    """An estimate (A - B on the same images, or one value against a constant) with its variances: a t interval."""

    value: float
    test_var: float                       # test-set sampling, from the bootstrap (df inf)
    seed_terms: tuple[SeedTerm, ...] = ()  # training noise, one term per variance estimate
    seeds: int = 1                        # seeds behind the least-replicated side
    run_var: float = 0.0                  # variance of one run of A minus one run of B (for p_better)

    @property
    def seed_var(self) -> float:
        return sum(t.coef * t.variance.value for t in self.seed_terms)

    @property
    def se(self) -> float:
        return math.sqrt(self.test_var + self.seed_var)

    @cached_property
    def df(self) -> float:
        return welch_satterthwaite([(self.test_var, math.inf)]
                                   + [(t.coef * t.variance.value, t.variance.df) for t in self.seed_terms])

    @property
    def quantile(self) -> float:
        return t_quantile(self.df)

    @property
    def half_width(self) -> float:
        return self.quantile * self.se

    @property
    def test_half_width(self) -> float:
        """The test-set share of the half-width, at the interval's quantile (its square and the seeds' add up)."""
        return self.quantile * math.sqrt(self.test_var)

    @property
    def low(self) -> float:
        return self.value - self.half_width

    @property
    def high(self) -> float:
        return self.value + self.half_width

    def p_above(self, boundary: float = 0.0) -> float:
        """One-sided p-value of 'the value is above boundary' (t at the interval's df)."""
        if self.se == 0:
            return 0.0 if self.value > boundary else 1.0
        return t_above((self.value - boundary) / self.se, self.df)

    def p_below(self, boundary: float = 0.0) -> float:
        if self.se == 0:
            return 0.0 if self.value < boundary else 1.0
        return t_above((boundary - self.value) / self.se, self.df)

    def describe(self) -> str:
        """'±H pt (test ±T, seeds ±S: whose variance, its df; the quantile)', H^2 = T^2 + S^2."""
        if self.se == 0:
            return "±0.00 pt (exact: no test-set or seed variation)"
        measured = [t.variance for t in self.seed_terms if 0 < t.variance.df < math.inf]
        if measured:
            given = {v.given for v in measured if v.given}
            whose = ", ".join(f"{v.source} {v.df:.0f} df" for v in measured) + "".join(f", given {g}" for g in given)
            seeds = f"seeds ±{self.quantile * math.sqrt(self.seed_var) * 100:.2f}: {whose}"
        else:
            seeds = "seeds unmeasured" if any(t.variance.df == 0 for t in self.seed_terms) else "no seed part"
        quantile = "normal" if math.isinf(self.df) else f"t {self.quantile:.2f} at {self.df:.0f} df"
        return f"±{self.half_width * 100:.2f} pt (test ±{self.test_half_width * 100:.2f}, {seeds}; {quantile})"

    def p_better(self) -> str:
        """P(a run of A beats a run of B) under normal training noise, Phi(d / s), with Phi at the interval's ends
        (Bouthillier et al. 2021: significant when its lower bound is above 0.5); empty without training noise."""
        if self.run_var <= 0:
            return ""
        s = math.sqrt(self.run_var)
        p = [NormalDist().cdf(v / s) for v in (self.value, self.low, self.high)]
        return f"{p[0]:.2f} [{p[1]:.2f}, {p[2]:.2f}]"


@dataclass
class Estimate:
    """Per-image correctness (or cost) at one point, a seed mean or interpolated between two, and its seed part."""

    correct: np.ndarray   # (images,) in [0, 1] (or MACs as a fraction of dense)
    macs_frac: float
    seeds: int            # seeds behind the least-replicated point used
    seed_terms: tuple[SeedTerm, ...] = ()  # its seed variance: coef x a variance estimate (none: exact)
    run_var: float = 0.0  # seed variance of one run (for p_better)
    models: tuple | None = None  # (method, train budget): evaluations of the same trained models

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())


def difference(a: Estimate, b: Estimate, rng_seed: int = 0) -> Interval:
    """A - B on the same images: the test-set variance from the paired bootstrap, both sides' seed parts."""
    return Interval(float((a.correct - b.correct).mean()), bootstrap_variance(a.correct, b.correct, rng_seed),
                    merge(a.seed_terms + b.seed_terms), min(a.seeds, b.seeds), a.run_var + b.run_var)


def interval(est: Estimate) -> Interval:
    """One estimate's own interval (its mean against 0)."""
    return difference(est, Estimate(np.zeros_like(est.correct), est.macs_frac, est.seeds))


def interpolated(lo: Estimate, hi: Estimate, w: float) -> Estimate:
    """(1 - w) lo + w hi image by image, two points of one method (one seed variance). Evaluations of the same
    trained models move together over seeds (their sds add); independent trainings' variances add."""
    a, b = lo.seed_terms[0].coef, hi.seed_terms[0].coef
    coef = ((1 - w) * math.sqrt(a) + w * math.sqrt(b)) ** 2 if lo.models == hi.models else (1 - w) ** 2 * a + w ** 2 * b
    return Estimate((1 - w) * lo.correct + w * hi.correct, (1 - w) * lo.macs_frac + w * hi.macs_frac,
                    min(lo.seeds, hi.seeds), (SeedTerm(coef, hi.seed_terms[0].variance),), hi.run_var, hi.models)


def holm(p_values, alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down: the i-th smallest of m p-values (i from 0) is rejected while each so far is at most
    alpha / (m - i); the family-wise error stays within alpha. Returns which are rejected, in input order."""
    p = np.asarray(p_values, dtype=float)
    rejected = [False] * len(p)
    for i, j in enumerate(np.argsort(p, kind="stable")):
        if p[j] > alpha / (len(p) - i):
            break
        rejected[j] = True
    return rejected


def pareto_frontier(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """(cost, accuracy) points no cheaper point beats, sorted by cost."""
    order = np.lexsort((-acc, cost))
    best, keep = -np.inf, []
    for i in order:
        if acc[i] > best:
            keep.append(i)
            best = acc[i]
    return np.stack([cost[keep], acc[keep]], 1) if keep else np.zeros((0, 2))
