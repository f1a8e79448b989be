"""Published claims judged against the noise measured in the same run.

Each method declares its paper's checkable claims as data (`Method.claims`). A numeric claim names
its published setting (dataset, backbone, schedule) and point (cost, accuracy, the paper's dense
accuracy) and a margin fixed before any run; a shape claim is a comparison judged on whatever ran.
Every verdict comes from a 95 % interval that adds two measured noises: test-set sampling (SciPy's
paired bootstrap over the per-sample records) and training variance (the spread over seeds of the
method at its replicated budget, see `Evidence.seed_sd`). A margin inside that interval is
inconclusive. Units: MACs (BlockDrop and DLP count FLOPs = 2 x MACs; SANP, LC-Net and FBS count MACs).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:  # imported where tables are judged: methods define claims, training jobs need no pandas
    import pandas as pd

HOLDS, FAILS, INCONCLUSIVE, NOT_COMPARABLE, NOT_RUN = (
    "holds", "does not hold", "inconclusive", "not comparable", "not run")
VERDICTS = {
    HOLDS: "the whole 95 % interval lies on the claimed side of published ± margin",
    FAILS: "the whole 95 % interval lies on the other side",
    INCONCLUSIVE: "the interval straddles the boundary: the noise is larger than the difference",
    NOT_COMPARABLE: "the run has no point at the published cost (or nothing to compare with there)",
    NOT_RUN: "the published setting, or a method the claim needs, is not in this run's config",
}
Z95 = NormalDist().inv_cdf(0.975)
BOOTSTRAP_RESAMPLES = 999
SUMMARY_COLUMN = {"correct": "accuracy", "macs": "macs_frac"}  # a per-sample value -> its summary column
COLUMNS = ["method", "claim", "text", "source", "setting", "dataset", "backbone", "schedule", "seeds",
           "published", "reproduced", "margin", "noise", "p_better", "verdict"]


@dataclass(frozen=True)
class Claim:
    """One checkable claim of a method's paper."""

    id: str
    text: str                      # the claim in this harness's units
    source: str                    # paper, table or section
    dataset: str | None = None     # numeric claims: the published setting
    backbone: str | None = None
    epochs: tuple = ()             # ((stage, published epochs), ...): the run's schedule is its smallest ratio
    macs_frac: float | None = None  # the published cost: fraction of dense MACs (controller included)
    blocks_frac: float | None = None  # or a share of the blocks (a block-budget method's eval budget)
    accuracy: float | None = None   # the published accuracy (0..1)
    dense_accuracy: float | None = None  # the paper's dense network: a numeric claim is judged on the drop from it
    margin: float = 0.005           # delta: the drop may exceed the published drop by this much and still hold
    published: str = ""             # how the paper states it, where not as accuracy at a cost
    # shape claims: Evidence of one dataset x backbone -> Judgement, or None when a method it needs is absent
    check: Callable[["Evidence"], "Judgement | None"] | None = None


@dataclass
class Judgement:
    verdict: str
    reproduced: str = ""
    margin: str = ""    # the observed distance from the decision boundary (positive: the claimed side)
    noise: str = ""     # half-width of its 95 % interval
    seeds: int = 0
    p_better: str = ""  # comparisons: probability that a run of A beats a run of B, with its interval


@dataclass
class Estimate:
    """Per-image correctness at one cost (a seed mean, or interpolated between two points) and its training noise."""

    correct: np.ndarray   # (images,) in [0, 1]
    macs_frac: float
    seeds: int            # seeds behind the least-replicated point used
    seed_sd: float        # spread of one run's accuracy over seeds (the method's noise figure); 0 when unmeasured
    seed_var: float       # variance of this estimate from training noise: seed_sd^2 / seeds

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())


@dataclass
class Difference:
    """A - B on the same test images: the value, its 95 % half-width and what that holds."""

    value: float
    half_width: float
    test_half_width: float
    run_sd: float          # sd of one run's difference from training noise (for P(A > B))
    seeds: int

    @property
    def low(self) -> float:
        return self.value - self.half_width

    @property
    def high(self) -> float:
        return self.value + self.half_width

    def p_better(self) -> str:
        """P(a run of A beats a run of B) under normal training noise, with the interval from the CI (Bouthillier
        et al. 2021: significant when its lower bound is above 0.5); empty without measured training noise."""
        if self.run_sd <= 0:
            return ""
        p = [NormalDist().cdf(v / self.run_sd) for v in (self.value, self.low, self.high)]
        return f"{p[0]:.2f} [{p[1]:.2f}, {p[2]:.2f}]"


def difference(a: Estimate, b: Estimate, rng_seed: int = 0) -> Difference:
    """A - B in accuracy: test-set noise by SciPy's paired bootstrap over images, training noise added from seeds."""
    diff = a.correct - b.correct
    if np.ptp(diff) == 0:  # identical on every image up to a constant: no test-set variation to resample
        test_se = 0.0
    else:
        from scipy import stats  # lazily: every method file imports this module, and scipy.stats takes ~1 s

        res = stats.bootstrap((a.correct, b.correct), lambda x, y, axis=-1: (x - y).mean(axis=axis), paired=True,
                              n_resamples=BOOTSTRAP_RESAMPLES, batch=100, method="percentile",
                              random_state=np.random.default_rng(rng_seed))
        test_se = float(res.standard_error)
    se = np.sqrt(test_se ** 2 + a.seed_var + b.seed_var)
    return Difference(float(diff.mean()), float(Z95 * se), float(Z95 * test_se),
                      float(np.sqrt(a.seed_sd ** 2 + b.seed_sd ** 2)), min(a.seeds, b.seeds))


def interval(est: Estimate) -> Difference:
    """One estimate's own interval (its mean against 0)."""
    return difference(est, Estimate(np.zeros_like(est.correct), est.macs_frac, est.seeds, 0.0, 0.0))


def against(d: Difference, boundary: float) -> str:
    """Holds when the whole interval is at or above `boundary`, does not hold when it is all below."""
    return HOLDS if d.low >= boundary else FAILS if d.high < boundary else INCONCLUSIVE


def pt(x: float) -> str:
    return f"{x * 100:+.2f} pt"


def noise_text(d: Difference) -> str:
    seeds = np.sqrt(max(d.half_width ** 2 - d.test_half_width ** 2, 0.0))
    return f"±{d.half_width * 100:.2f} pt (test ±{d.test_half_width * 100:.2f}, seeds ±{seeds * 100:.2f})"


class Evidence:
    """The per-seed summary rows of one dataset x backbone and, through their `records` paths (or `records`, a
    callable row -> per-sample frame), each evaluation's per-sample correctness. `parents`: derived method ->
    the method whose trained models it runs (whose seed spread is its noise)."""

    def __init__(self, rows: pd.DataFrame, records: Callable[[pd.Series], pd.DataFrame] | None = None,
                 parents: dict[str, str] | None = None):
        self.rows = rows
        self.parents = parents or {}
        import pandas as pd

        self._records = records or (lambda row: pd.read_parquet(row["records"], columns=["correct", "macs"]))
        self._cache: dict = {}

    def has(self, *methods: str) -> bool:
        return all((self.rows["method"] == m).any() for m in methods)

    def points(self, method: str, cost: str = "macs_frac") -> pd.DataFrame:
        """A method's (train budget, eval budget) points: seed means of accuracy and costs, seeds, sorted by cost."""
        sub = self.rows[self.rows["method"] == method]
        g = sub.groupby(["train_budget", "eval_budget"])
        out = g[list(dict.fromkeys(["accuracy", "macs_frac", cost, "num_blocks"]))].mean()
        out["seeds"] = g["seed"].nunique()
        return out.reset_index().sort_values([cost, "eval_budget"]).reset_index(drop=True)

    def seed_sd(self, method: str, value: str = "correct") -> tuple[float, int]:
        """The method's noise figure: the sd over seeds of one run's accuracy (or MACs fraction) at its
        most-replicated point (the replicated budget stands for all its budgets); a derived method without
        replicates takes its parent's (it trains nothing: its models are the parent's); (0, 1) when none has two seeds."""
        sub = self.rows[self.rows["method"] == method]
        g = sub.groupby(["train_budget", "eval_budget"])[SUMMARY_COLUMN[value]]
        n = g.count()
        if n.empty or n.max() < 2:
            return self.seed_sd(self.parents[method], value) if method in self.parents else (0.0, 1)
        best = n[n == n.max()].index
        return float(g.std(ddof=1).loc[best].mean()), int(n.max())

    def _per_sample(self, row, value: str) -> np.ndarray:
        key = (row["method"], row["train_budget"], row["eval_budget"], row["seed"], value)
        if key not in self._cache:
            column = self._records(row)[value].to_numpy(dtype=float)
            self._cache[key] = column / row["dense_macs"] if value == "macs" else column
        return self._cache[key]

    def at_point(self, method: str, train_budget, eval_budget, value: str = "correct") -> Estimate:
        """Per image, the seed mean of correctness (or of MACs as a fraction of dense) at one point."""
        rows = self.rows[(self.rows["method"] == method) & (self.rows["train_budget"] == train_budget)
                         & (self.rows["eval_budget"] == eval_budget)]
        correct = np.mean([self._per_sample(r, value) for _, r in rows.iterrows()], axis=0)
        sd, _ = self.seed_sd(method, value)
        n = rows["seed"].nunique()
        return Estimate(correct, float(rows["macs_frac"].mean()), n, sd, sd ** 2 / n)

    def at_cost(self, method: str, frac: float, cost: str = "macs_frac") -> Estimate | None:
        """The method's Pareto frontier (seed means) linearly interpolated at a fraction of dense MACs (or of
        another cost column, e.g. params_frac), image by image; past the frontier's costliest point, that point
        (a cheaper model at least as accurate); None outside the cost range of the method's points."""
        from .tables import pareto_frontier

        pts = self.points(method, cost)
        if pts.empty or not pts[cost].min() - 1e-9 <= frac <= pts[cost].max() + 1e-9:
            return None
        front = pareto_frontier(pts[cost].to_numpy(), pts["accuracy"].to_numpy())
        on_front = [pts[(pts[cost] == c) & (pts["accuracy"] == a)].iloc[0] for c, a in front]
        right = next((i for i, p in enumerate(on_front) if p[cost] >= frac - 1e-9), len(on_front) - 1)
        hi = self.at_point(method, on_front[right]["train_budget"], on_front[right]["eval_budget"])
        if right == 0 or on_front[right][cost] <= frac + 1e-9:
            return hi
        lo = self.at_point(method, on_front[right - 1]["train_budget"], on_front[right - 1]["eval_budget"])
        w = (frac - on_front[right - 1][cost]) / (on_front[right][cost] - on_front[right - 1][cost])
        return Estimate((1 - w) * lo.correct + w * hi.correct, (1 - w) * lo.macs_frac + w * hi.macs_frac,
                        min(lo.seeds, hi.seeds), hi.seed_sd, (1 - w) ** 2 * lo.seed_var + w ** 2 * hi.seed_var)

    def cost_range(self, method: str) -> tuple[float, float]:
        pts = self.points(method)
        return float(pts["macs_frac"].min()), float(pts["macs_frac"].max())

    def dense(self) -> Estimate | None:
        return self.at_point("dense", *self.points("dense").iloc[0][["train_budget", "eval_budget"]]) \
            if self.has("dense") else None


# ---------------------------------------------------------------- shape claims


def compare_points(ev: Evidence, a: str, b: str, pairs) -> list[tuple[str, Difference]]:
    """A - B at given (label, A's (train, eval) budget, B's (train, eval) budget) points."""
    return [(label, difference(ev.at_point(a, *pa), ev.at_point(b, *pb))) for label, pa, pb in pairs]


def compare_at_costs(ev: Evidence, a: str, b: str, at_points_of: str | None = None) -> list[tuple[str, Difference]]:
    """A - B at each measured point of one side (`at_points_of`, default A), the other side interpolated on its
    frontier at that cost (points outside its range are left out: nothing to compare there)."""
    measured = at_points_of or a
    other_side = b if measured == a else a
    out = []
    for p in ev.points(measured).itertuples():
        other = ev.at_cost(other_side, p.macs_frac)
        if other is not None:
            mine = ev.at_point(measured, p.train_budget, p.eval_budget)
            out.append((f"{p.macs_frac:.3f}", difference(*((mine, other) if measured == a else (other, mine)))))
    return out


def shape_verdict(comparisons: list[tuple[str, Difference]], where: str = "at MACs") -> Judgement:
    """Holds with no loss beyond noise and at least one win; does not hold with a loss beyond noise; else
    inconclusive. Margin and noise shown are the deciding comparison's (the best win, the worst loss, or the
    closest call)."""
    if not comparisons:
        return Judgement(NOT_COMPARABLE, "no point where both were measured")
    won = [c for c in comparisons if c[1].low > 0]
    lost = [c for c in comparisons if c[1].high < 0]
    if lost:
        verdict, (label, d) = FAILS, min(lost, key=lambda c: c[1].high)
    elif won:
        verdict, (label, d) = HOLDS, max(won, key=lambda c: c[1].low)
    else:
        verdict, (label, d) = INCONCLUSIVE, min(comparisons, key=lambda c: abs(c[1].value) - c[1].half_width)
    within = len(comparisons) - len(won) - len(lost)
    detail = "; ".join(f"{lab}: {pt(x.value)}" for lab, x in comparisons)
    return Judgement(verdict, f"won {len(won)}, lost {len(lost)}, within noise {within} ({where} {detail})",
                     f"{pt(d.value)} {where} {label}", noise_text(d), d.seeds, d.p_better())


def beats_at_equal_macs(ev: Evidence, a: str, b: str) -> Judgement | None:
    """Shape check: A is more accurate than B interpolated at A's costs."""
    if not ev.has(a, b):
        return None
    return shape_verdict(compare_at_costs(ev, a, b))


# ---------------------------------------------------------------- numeric claims


def schedule_fraction(claim: Claim, rows: pd.DataFrame) -> float | None:
    """The run's epochs over the paper's, the smallest ratio over the claim's stages (None: not declared)."""
    if not claim.epochs or "epochs" not in rows:
        return None
    run = rows["epochs"].dropna()
    if run.empty:
        return None
    run = run.iloc[0]
    ratios = [run.get(stage, 0) / published for stage, published in claim.epochs]
    return float(min(ratios))


def judge_numeric(claim: Claim, method: str, ev: Evidence) -> Judgement:
    """The drop from the run's own dense network at the published cost (interpolated on the method's frontier)
    against the published drop + margin; absolute accuracy where the paper or the run has no dense figure."""
    if not ev.has(method):
        return Judgement(NOT_RUN)
    if claim.blocks_frac is not None:
        from .api import blocks_at_least

        pts = ev.points(method)
        k = blocks_at_least(claim.blocks_frac, int(pts["num_blocks"].iloc[0]))
        at = pts[pts["eval_budget"] == k]
        if at.empty:
            return Judgement(NOT_COMPARABLE, f"no evaluation at {k} blocks")
        est = ev.at_point(method, at["train_budget"].iloc[0], k)
        where = f"{k} of {int(at['num_blocks'].iloc[0])} blocks ({est.macs_frac:.3f} of dense MACs)"
    else:
        est = ev.at_cost(method, claim.macs_frac)
        if est is None:
            low, high = ev.cost_range(method)
            side = f"{low - claim.macs_frac:.3f} below its cheapest" if claim.macs_frac < low else \
                f"{claim.macs_frac - high:.3f} above its costliest"
            return Judgement(NOT_COMPARABLE, f"run's costs {low:.3f}-{high:.3f} of dense MACs: the published "
                                             f"{claim.macs_frac:.3f} is {side} point", seeds=int(ev.points(method)["seeds"].min()))
        where = f"{claim.macs_frac:.3f} of dense MACs"
    dense = ev.dense()
    if dense is not None and claim.dense_accuracy is not None:
        d = difference(est, dense)  # the negative drop: method - dense
        boundary = -((claim.dense_accuracy - claim.accuracy) + claim.margin)
        reproduced = f"{est.accuracy:.2%} at {where}, dense {dense.accuracy:.2%}: {pt(d.value)} [{pt(d.low)}, {pt(d.high)}]"
    else:  # absolute accuracy: test-set noise of the one estimate against a constant
        d = interval(est)
        boundary = claim.accuracy - claim.margin
        reproduced = f"{est.accuracy:.2%} [{d.low:.2%}, {d.high:.2%}] at {where} (no dense to take the drop from)"
    return Judgement(against(d, boundary), reproduced, pt(d.value - boundary), noise_text(d), est.seeds)


def published_text(claim: Claim) -> str:
    if claim.accuracy is None:
        return claim.published
    cost = f"{claim.blocks_frac:.0%} of the blocks" if claim.blocks_frac is not None else f"{claim.macs_frac:.3f} of dense MACs"
    text = f"{claim.accuracy:.2%} at {cost}"
    if claim.dense_accuracy is not None:
        text += f", dense {claim.dense_accuracy:.2%}: {pt(claim.accuracy - claim.dense_accuracy)}"
    return text + f" (margin {claim.margin * 100:.2g} pt)"


# ---------------------------------------------------------------- sanity


SANITY_MARGIN = 0.005  # the no-pruning setting may lose this much accuracy against dense and still hold
SANITY = Claim("sanity", "with its knob at no pruning, the method is the dense network: its cost, its accuracy "
               f"(within {SANITY_MARGIN * 100:g} pt)", "harness (a sanity point on every knob)",
               margin=SANITY_MARGIN, published="(the dense network)")


def judge_sanity(method, name: str, ev: Evidence) -> Judgement | None:
    """The method's no-pruning point against the dense network: its mean cost (interval over test images and
    seeds) against 99 % of dense MACs, then the accuracy difference (paired, with seeds) against -margin; the
    cost decides unless it holds. None where the point did not run."""
    if not ev.has(name, "dense"):
        return None
    pts = ev.points(name)
    if method.no_pruning == "all blocks":
        at = pts[pts["eval_budget"] == pts["num_blocks"]]
    else:
        knob = "eval_budget" if method.test_time_knob else "train_budget"
        at = pts[np.isclose(pts[knob].astype(float), float(method.no_pruning))]
    if at.empty:
        return None
    p = at.iloc[-1]
    est, dense = ev.at_point(name, p["train_budget"], p["eval_budget"]), ev.dense()
    d = difference(est, dense)
    reproduced = (f"{est.accuracy:.2%} at {est.macs_frac:.3f} of dense MACs (budget {p['train_budget']:g}/"
                  f"{p['eval_budget']:g}), dense {dense.accuracy:.2%}: {pt(d.value)} [{pt(d.low)}, {pt(d.high)}]")
    cost = interval(ev.at_point(name, p["train_budget"], p["eval_budget"], value="macs"))
    if against(cost, 0.99) != HOLDS:
        return Judgement(against(cost, 0.99), reproduced, f"{pt(cost.value - 0.99)} of dense MACs",
                         noise_text(cost), est.seeds)
    return Judgement(against(d, -SANITY_MARGIN), reproduced, pt(d.value + SANITY_MARGIN), noise_text(d), est.seeds)


# ---------------------------------------------------------------- the table


def derived_parents(methods: dict) -> dict[str, str]:
    """Derived method -> the method whose trained models it runs, for `methods` (name -> Method)."""
    return {name: m.derived_from for name, m in methods.items() if getattr(m, "derived_from", None)}


def claims_table(summary: pd.DataFrame, methods: dict, records: Callable | None = None) -> pd.DataFrame:
    """One row per claim and setting that ran (a numeric claim's own setting as 'not run' when absent) of the
    `methods` (name -> Method; one not in `summary` gets only those 'not run' rows). `records`: row ->
    per-sample frame (default: read the row's `records` path)."""
    import pandas as pd

    out, ran = [], set(summary["method"])
    settings = list(summary[["dataset", "backbone"]].drop_duplicates().itertuples(index=False))
    ok = summary["status"] == "ok" if "status" in summary else pd.Series(True, index=summary.index)
    measured, diverged = summary[ok], summary[~ok]
    parents = derived_parents(methods)
    evidence = {(d, b): Evidence(measured[(measured["dataset"] == d) & (measured["backbone"] == b)], records, parents)
                for d, b in settings}
    for name, method in sorted(methods.items()):
        for claim in type(method).__dict__.get("claims", ()):  # declared by this class, not inherited
            base = {"method": name, "claim": claim.id, "text": claim.text, "source": claim.source}
            numeric = claim.check is None
            if numeric and (claim.dataset, claim.backbone) not in evidence:
                out.append({**base, "setting": "paper", "dataset": claim.dataset, "backbone": claim.backbone,
                            "published": published_text(claim), **vars(Judgement(NOT_RUN))})
            for (dataset, backbone), ev in evidence.items():
                if name not in ran:
                    break  # a method the config lacks: only its published settings' "not run" rows
                row = {**base, "dataset": dataset, "backbone": backbone}
                if numeric:
                    if claim.accuracy is None:
                        continue  # a published number not in accuracy at a cost: its own setting's row says not run
                    schedule = schedule_fraction(claim, ev.rows[ev.rows["method"] == name])
                    paper = (dataset, backbone) == (claim.dataset, claim.backbone) and (schedule or 0) >= 1 - 1e-9
                    judgement = judge_numeric(claim, name, ev)
                    row.update(setting="paper" if paper else "stand-in", schedule=schedule,
                               published=published_text(claim))
                else:
                    judgement = claim.check(ev) or Judgement(NOT_RUN)
                    row.update(setting="shape", published="(shape)")
                lost = diverged[(diverged["dataset"] == dataset) & (diverged["backbone"] == backbone)
                                & (diverged["method"] == name)]
                if len(lost):  # a diverged training is a result: the row says so
                    judgement.verdict = NOT_COMPARABLE if judgement.verdict == NOT_RUN else judgement.verdict
                    budgets = ", ".join(f"{b:g}" for b in sorted(set(lost["train_budget"])))
                    judgement.reproduced = "; ".join(filter(None, [f"diverged at {budgets}", judgement.reproduced]))
                if judgement.verdict == NOT_RUN and not numeric:
                    judgement.reproduced = judgement.reproduced or "a method it compares is not in this run"
                out.append({**row, **vars(judgement)})
        if getattr(method, "no_pruning", None) is not None:
            for (dataset, backbone), ev in evidence.items():
                judgement = judge_sanity(method, name, ev)
                if judgement is not None:
                    out.append({"method": name, "claim": SANITY.id, "text": SANITY.text, "source": SANITY.source,
                                "dataset": dataset, "backbone": backbone, "setting": "sanity",
                                "published": SANITY.published, **vars(judgement)})
    table = pd.DataFrame(out, columns=COLUMNS)
    table["seeds"] = table["seeds"].fillna(0).astype(int)
    return table


def noise_table(summary: pd.DataFrame, records: Callable | None = None,
                parents: dict[str, str] | None = None) -> pd.DataFrame:
    """Each method's noise figure per dataset x backbone (a derived method's: its parent's spread, see
    `Evidence.seed_sd`): seeds at its replicated point, the sd of one run's
    accuracy over them, the test-set 95 % half-width of one accuracy there, and the smallest difference between
    two single runs the run can resolve (95 %: both runs' seed spread and two independent test-set draws)."""
    import pandas as pd

    out = []
    for (dataset, backbone), rows in summary.groupby(["dataset", "backbone"]):
        ev = Evidence(rows, records, parents)
        for method in sorted(rows["method"].unique()):
            sd, n = ev.seed_sd(method)
            pts = ev.points(method)
            p = pts.loc[pts["seeds"].idxmax()]
            spread_of = method if p["seeds"] >= 2 or method not in ev.parents else ev.parents[method]
            est = ev.at_point(method, p["train_budget"], p["eval_budget"])
            d = interval(est)
            out.append({"dataset": dataset, "backbone": backbone, "method": method, "point": f"{p['train_budget']:g}/"
                        f"{p['eval_budget']:g}", "seeds": n, "spread_of": spread_of, "seed_sd_pt": sd * 100,
                        "test_half_width_pt": d.test_half_width * 100,
                        "resolvable_pt": Z95 * np.sqrt((d.test_half_width / Z95) ** 2 * 2 + 2 * sd ** 2) * 100})
    return pd.DataFrame(out)
