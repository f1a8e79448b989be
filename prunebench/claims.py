"""Published claims judged against the noise measured in the same run.

Each method declares its paper's checkable claims as data (`Method.claims`). A numeric claim names
its published setting (dataset, backbone, schedule) and point (cost, accuracy, the paper's dense
accuracy) and a margin fixed by one rule (`MARGIN`); a shape claim is a comparison judged on whatever
ran, naming the paper's setting it comes from. Every verdict comes from a 95 % t interval over two
measured noises, test-set sampling and training variance; the arithmetic is in `prunebench.stats`, the
evidence and the verdict rules here. Units: MACs (BlockDrop and DLP count FLOPs = 2 x MACs; SANP, LC-Net
and FBS count MACs). docs/claims.md describes both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import stats
# the methods' checks take these from here
from .stats import Estimate, Interval, SeedTerm, SeedVariance, difference, interpolated, interval

if TYPE_CHECKING:  # imported where tables are judged: methods define claims, training jobs need no pandas
    import pandas as pd

HOLDS, FAILS, INCONCLUSIVE, NOT_COMPARABLE, NOT_RUN = (
    "holds", "does not hold", "inconclusive", "not comparable", "not run")
VERDICTS = {
    HOLDS: "the whole 95 % interval lies on the claimed side of published ± margin (over several points: at each, "
           "Holm-corrected)",
    FAILS: "the whole 95 % interval lies on the other side (over several points: at one, Holm-corrected)",
    INCONCLUSIVE: "the interval straddles the boundary: the noise is larger than the difference",
    NOT_COMPARABLE: "the run has no point at the published cost (or nothing to compare with there)",
    NOT_RUN: "the published setting, or a method the claim needs, is not in this run's config",
}
# The one margin rule: the larger of 0.5 pt and the paper's own reported spread of the number (none of the
# papers reports one): docs/claims.md#margins, which lists every margin changed after a run.
MARGIN = 0.005
# A learned no-pruning point (Method.no_pruning_learned, RNP's p = 0) keeps at least this share of dense MACs: uniformly
# random actions keep about half (RNP's: 0.48 on the default backbone); the sanity rows and check_no_pruning use it
LEARNED_KEEPS = 0.9
SUMMARY_COLUMN = {"correct": "accuracy", "macs": "macs_frac"}  # a per-sample value -> its summary column
COLUMNS = ["method", "claim", "text", "source", "setting", "dataset", "backbone", "schedule", "seeds",
           "published", "reproduced", "distance", "noise", "p_better", "verdict"]


@dataclass(frozen=True)
class Claim:
    """One checkable claim of a method's paper."""

    id: str
    text: str                      # the claim in this harness's units
    source: str                    # paper, table or section
    dataset: str | None = None     # the published setting (shape claims too: where the paper shows it)
    backbone: str | None = None
    epochs: tuple = ()             # ((stage, published epochs), ...): the run's schedule is its smallest ratio
    macs_frac: float | None = None  # the published cost: fraction of dense MACs (controller included)
    blocks_frac: float | None = None  # or a share of the blocks (a block-budget method's eval budget)
    accuracy: float | None = None   # the published accuracy (0..1)
    dense_accuracy: float | None = None  # the paper's dense network: a numeric claim is judged on the drop from it
    margin: float = MARGIN          # delta: the drop may exceed the published drop by this much and still hold
    published: str = ""             # how the paper states it, where not as accuracy at a cost (shape: where in it)
    # shape claims: Evidence of one dataset x backbone -> Judgement, or None when a method it needs is absent
    check: Callable[["Evidence"], "Judgement | None"] | None = None
    # shape claims about each budget the method prunes at: judged without its no-pruning point, and a budget
    # whose training diverged makes it not hold
    every_budget: bool = False


@dataclass
class Judgement:
    verdict: str
    reproduced: str = ""
    distance: str = ""  # the estimate's distance from the decision boundary, published ± δ (positive: the claimed side)
    noise: str = ""     # half-width of its 95 % interval
    seeds: int = 0
    p_better: str = ""  # comparisons: probability that a run of A beats a run of B, with its interval


def against(d: Interval, boundary: float) -> str:
    """Holds when the whole interval is at or above `boundary`, does not hold when it is all below."""
    return HOLDS if d.low >= boundary else FAILS if d.high < boundary else INCONCLUSIVE


def pt(x: float) -> str:
    return f"{x * 100:+.2f} pt"


noise_text = Interval.describe  # "±H pt (test ±T, seeds ±S: whose, df; quantile)"


class Evidence:
    """The per-seed summary rows of one dataset x backbone and, through their `records` paths (or `records`, a
    callable row -> per-sample frame), each evaluation's per-sample correctness. `parents`: derived method ->
    the method whose trained models it runs (whose seed variance it may use)."""

    def __init__(self, rows: pd.DataFrame, records: Callable[[pd.Series], pd.DataFrame] | None = None,
                 parents: dict[str, str] | None = None, identities: dict[str, float] | None = None):
        self.rows = self._all = rows
        self.parents = parents or {}
        self.identities = identities or {}  # method -> its no-pruning train budget
        import pandas as pd

        self._records = records or (lambda row: pd.read_parquet(row["records"], columns=["correct", "macs"]))
        self._cache: dict = {}
        self._variances: dict = {}

    def without(self, drop: np.ndarray) -> Evidence:
        """The same evidence less the rows `drop` (a mask); seed variances still come from every row."""
        other = Evidence.__new__(Evidence)
        other.__dict__.update(self.__dict__, rows=self.rows[~drop])
        return other

    def has(self, *methods: str) -> bool:
        return all((self.rows["method"] == m).any() for m in methods)

    def points(self, method: str, cost: str = "macs_frac") -> pd.DataFrame:
        """A method's (train budget, eval budget) points: seed means of accuracy and costs, seeds, sorted by cost."""
        sub = self.rows[self.rows["method"] == method]
        g = sub.groupby(["train_budget", "eval_budget"])
        out = g[list(dict.fromkeys(["accuracy", "macs_frac", cost, "num_blocks"]))].mean()
        out["seeds"] = g["seed"].nunique()
        return out.reset_index().sort_values([cost, "eval_budget"]).reset_index(drop=True)

    def seed_variance(self, method: str, value: str = "correct", own: bool = False, train_budget=None) -> SeedVariance:
        """The seed variance `method`'s estimates use (`stats.choose`; `own`: its own), accuracy's pooled across
        methods; the dense network, unreplicated, is the fixed reference every replicate starts from. A cost at a
        `train_budget` whose training was replicated uses that training's own spread: a controller's spread depends
        on where its knob puts it (RNP's at a pruning p is many times its spread at p = 0, where it keeps everything)."""
        if value not in self._variances:
            rows = self._all
            if value == "macs":  # a no-pruning training's cost barely varies: it says nothing of a pruning budget's
                identity = rows["method"].map(self.identities)
                rows = rows[identity.isna() | (rows["train_budget"] != identity)]
            self._variances[value] = stats.seed_variances(rows, SUMMARY_COLUMN[value], set(self.parents),
                                                          pool=value == "correct", given=self._given())
        methods, pooled = self._variances[value]
        mine = methods.get(method, stats.UNMEASURED)
        if own or (method == "dense" and mine.df == 0):
            return mine if own else stats.FIXED
        if value == "macs" and train_budget is not None:
            rows = self._all[(self._all["method"] == method) & (self._all["train_budget"] == train_budget)]
            here = stats.method_variance(rows, SUMMARY_COLUMN[value], f"{method} at {train_budget:g}")
            if here.df > 0:
                return replace(here, given=self._given())
        parent = methods.get(self.parents[method], stats.UNMEASURED) if method in self.parents else None
        return stats.choose(mine, parent, pooled)

    def _given(self) -> str:
        """What every replicate shared: the one dense backbone they all started from."""
        dense = self._all.loc[self._all["method"] == "dense", "seed"].unique()
        return f"seed {dense[0]}'s backbone" if len(dense) == 1 else ""

    def _per_sample(self, row, value: str) -> np.ndarray:
        key = (row["method"], row["train_budget"], row["eval_budget"], row["seed"], value)
        if key not in self._cache:
            column = self._records(row)[value].to_numpy(dtype=float)
            self._cache[key] = column / row["dense_macs"] if value == "macs" else column
        return self._cache[key]

    def at_point(self, method: str, train_budget, eval_budget, value: str = "correct") -> Estimate:
        """Per image, the seed mean of correctness (or of MACs as a fraction of dense) at one point. A cost equal
        on every image and seed is exact (a static network's over two seeds at least: its architecture is learned)."""
        rows = self.rows[(self.rows["method"] == method) & (self.rows["train_budget"] == train_budget)
                         & (self.rows["eval_budget"] == eval_budget)]
        per_seed = np.stack([self._per_sample(r, value) for _, r in rows.iterrows()])
        n = rows["seed"].nunique()
        static = "static" in rows and rows["static"].astype(bool).any()
        if value == "macs" and np.ptp(per_seed) == 0 and (n >= 2 or not static):
            return Estimate(per_seed.mean(axis=0), float(rows["macs_frac"].mean()), n, models=(method, train_budget))
        variance = self.seed_variance(method, value, train_budget=train_budget)
        return Estimate(per_seed.mean(axis=0), float(rows["macs_frac"].mean()), n, (SeedTerm(1 / n, variance),),
                        variance.value, (method, train_budget))

    def at_cost(self, method: str, frac: float, cost: str = "macs_frac") -> Estimate | None:
        """The method's Pareto frontier (seed means) linearly interpolated at a fraction of dense MACs (or of
        another cost column, e.g. params_frac), image by image; past the frontier's costliest point, that point
        (a cheaper model at least as accurate); None outside the cost range of the method's points."""
        pts = self.points(method, cost)
        if pts.empty or not pts[cost].min() - 1e-9 <= frac <= pts[cost].max() + 1e-9:
            return None
        front = stats.pareto_frontier(pts[cost].to_numpy(), pts["accuracy"].to_numpy())
        on_front = [pts[(pts[cost] == c) & (pts["accuracy"] == a)].iloc[0] for c, a in front]
        right = next((i for i, p in enumerate(on_front) if p[cost] >= frac - 1e-9), len(on_front) - 1)
        hi = self.at_point(method, on_front[right]["train_budget"], on_front[right]["eval_budget"])
        if right == 0 or on_front[right][cost] <= frac + 1e-9:
            return hi
        lo = self.at_point(method, on_front[right - 1]["train_budget"], on_front[right - 1]["eval_budget"])
        w = (frac - on_front[right - 1][cost]) / (on_front[right][cost] - on_front[right - 1][cost])
        return interpolated(lo, hi, w)

    def cost_range(self, method: str) -> tuple[float, float]:
        pts = self.points(method)
        return float(pts["macs_frac"].min()), float(pts["macs_frac"].max())

    def dense(self) -> Estimate | None:
        return self.at_point("dense", *self.points("dense").iloc[0][["train_budget", "eval_budget"]]) \
            if self.has("dense") else None


# ---------------------------------------------------------------- shape claims


def compare_points(ev: Evidence, a: str, b: str, pairs) -> list[tuple[str, Interval]]:
    """A - B at given (label, A's (train, eval) budget, B's (train, eval) budget) points."""
    return [(label, difference(ev.at_point(a, *pa), ev.at_point(b, *pb))) for label, pa, pb in pairs]


def compare_at_costs(ev: Evidence, a: str, b: str, at_points_of: str | None = None) -> list[tuple[str, Interval]]:
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


def shape_verdict(comparisons: list[tuple[str, Interval]], where: str = "at MACs") -> Judgement:
    """A claim at every point: holds when Holm's step-down over the points' one-sided t tests finds every point
    above 0; does not hold when it finds one below 0; else inconclusive. Margin and noise shown are the weakest
    point's (the smallest lower bound; where it does not hold, the clearest loss)."""
    if not comparisons:
        return Judgement(NOT_COMPARABLE, "no point where both were measured")
    won = stats.holm([d.p_above() for _, d in comparisons])
    lost = stats.holm([d.p_below() for _, d in comparisons])
    if any(lost):
        verdict, (label, d) = FAILS, min((c for c, x in zip(comparisons, lost) if x), key=lambda c: c[1].high)
    else:
        verdict, (label, d) = HOLDS if all(won) else INCONCLUSIVE, min(comparisons, key=lambda c: c[1].low)
    n, within = len(comparisons), len(comparisons) - sum(won) - sum(lost)
    detail = "; ".join(f"{lab}: {pt(x.value)}" for lab, x in comparisons)
    return Judgement(verdict, f"won {sum(won)}, lost {sum(lost)}, within noise {within} of {n} (Holm over the "
                              f"points; {where} {detail})", f"{pt(d.value)} {where} {label}", noise_text(d), d.seeds,
                     d.p_better())


def beats_at_equal_macs(ev: Evidence, a: str, b: str) -> Judgement | None:
    """Shape check: A is more accurate than B interpolated at A's costs, at each of A's points."""
    if not ev.has(a, b):
        return None
    return shape_verdict(compare_at_costs(ev, a, b))


def at_no_pruning(method, rows: pd.DataFrame) -> np.ndarray:
    """Which of `rows` (summary rows or points) are at the method's no-pruning budget (none if it declares none)."""
    if getattr(method, "no_pruning", None) is None:
        return np.zeros(len(rows), dtype=bool)
    if method.no_pruning == "all blocks":
        return (rows["eval_budget"] == rows["num_blocks"]).to_numpy()
    knob = "eval_budget" if method.test_time_knob else "train_budget"
    return np.isclose(rows[knob].astype(float), float(method.no_pruning))


def judge_shape(claim: Claim, name: str, method, ev: Evidence) -> Judgement:
    """A shape claim on one dataset x backbone: not decided where the method ran only its no-pruning point (a claim
    about pruning); an every-budget claim judged without that point (it says nothing about pruning)."""
    idle = (ev.rows["method"] == name).to_numpy() & at_no_pruning(method, ev.rows)
    if idle.any() and idle.sum() == (ev.rows["method"] == name).sum():
        return Judgement(NOT_COMPARABLE, "only its no-pruning point ran: nothing about pruning to judge")
    return claim.check(ev.without(idle) if claim.every_budget else ev) or \
        Judgement(NOT_RUN, "a method it compares is not in this run")


def shape_published(claim: Claim, name: str, ev: Evidence, dataset: str, backbone: str) -> str:
    """'(shape)', the paper's setting the claim comes from (`published`: where in it) and where this run differs."""
    if claim.dataset is None:
        return "(shape; ours: no paper setting)" if claim.source.startswith("ours") else \
            "(shape) paper: setting not in this repository's sources"
    differs = [f"{what} ({here})" for what, here, theirs in (("dataset", dataset, claim.dataset),
                                                              ("backbone", backbone, claim.backbone))
               if theirs is not None and here != theirs]
    blocks = ev.rows.loc[ev.rows["method"] == name, "num_blocks"]
    if claim.blocks_frac is not None and len(blocks):
        from .api import blocks_at_least

        k, total = blocks_at_least(claim.blocks_frac, int(blocks.iloc[0])), int(blocks.iloc[0])
        differs += [f"blocks kept ({k} of {total})"] if abs(k / total - claim.blocks_frac) > 0.005 else []
    paper = " ".join(filter(None, [claim.dataset, claim.backbone or "(backbone not stated)", claim.published]))
    if not differs:
        return f"(shape) paper: {paper}; here: as in the paper"
    same = "the paper's dataset, " if dataset == claim.dataset else ""  # e.g. CIFAR-10 at a shorter schedule
    return f"(shape) paper: {paper}; here: {same}other {', '.join(differs)}"


# ---------------------------------------------------------------- numeric claims


def schedule_fraction(claim: Claim, rows: pd.DataFrame) -> float | None:
    """The run's epochs over the paper's, the smallest ratio over the claim's stages (None: not declared)."""
    run = rows["epochs"].dropna() if claim.epochs and "epochs" in rows else ()
    if not len(run):
        return None
    return float(min(run.iloc[0].get(stage, 0) / published for stage, published in claim.epochs))


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


SANITY = Claim("sanity", "with its knob at no pruning, the method is the dense network: its cost, its accuracy "
               f"(within {MARGIN * 100:g} pt)", "harness (a sanity point on every knob)",
               published="(the dense network)")


def judge_sanity(method, name: str, ev: Evidence) -> Judgement | None:
    """The method's no-pruning point against the dense network: its mean cost (interval over test images and
    seeds; exact where every image and seed costs the same) against 99 % of dense MACs (a learned identity, e.g.
    RNP's p = 0: LEARNED_KEEPS, more than random actions keep), then the accuracy difference (paired, with seeds)
    against -margin; the cost decides unless it holds. None where it did not run."""
    if not ev.has(name, "dense"):
        return None
    pts = ev.points(name)
    at = pts[at_no_pruning(method, pts)]
    if at.empty:
        return None
    p = at.iloc[-1]
    est, dense = ev.at_point(name, p["train_budget"], p["eval_budget"]), ev.dense()
    d = difference(est, dense)
    reproduced = (f"{est.accuracy:.2%} at {est.macs_frac:.3f} of dense MACs (budget {p['train_budget']:g}/"
                  f"{p['eval_budget']:g}), dense {dense.accuracy:.2%}: {pt(d.value)} [{pt(d.low)}, {pt(d.high)}]")
    cost = interval(ev.at_point(name, p["train_budget"], p["eval_budget"], value="macs"))
    learned = getattr(method, "no_pruning_learned", False)
    floor = LEARNED_KEEPS if learned else 0.99
    if against(cost, floor) != HOLDS:
        return Judgement(against(cost, floor), reproduced, f"{pt(cost.value - floor)} of dense MACs",
                         noise_text(cost), est.seeds)
    if learned:  # a learned identity's cost half can hold while its accuracy half is judged: say so
        reproduced += f"; cost {pt(cost.value - floor)} above the {floor:g} floor, {noise_text(cost)}: holds"
    return Judgement(against(d, -SANITY.margin), reproduced, pt(d.value + SANITY.margin), noise_text(d), est.seeds)


# ---------------------------------------------------------------- the table


def derived_parents(methods: dict) -> dict[str, str]:
    """Derived method -> the method whose trained models it runs, for `methods` (name -> Method)."""
    return {name: m.derived_from for name, m in methods.items() if getattr(m, "derived_from", None)}


def with_divergence(judgement: Judgement, lost: pd.DataFrame, needed: pd.DataFrame | None = None) -> Judgement:
    """A diverged training is a result: the row names its budgets; a budget the claim needs makes it not hold."""
    if lost.empty:
        return judgement
    note = "diverged at " + ", ".join(f"{b:g}" for b in sorted(set(lost["train_budget"])))
    if needed is not None and not needed.empty:
        needs = ", ".join(f"{b:g}" for b in sorted(set(needed["train_budget"])))
        return Judgement(FAILS, f"{note}: the claim needs {needs}; {judgement.reproduced}", f"diverged at {needs}",
                         seeds=judgement.seeds)
    if judgement.verdict == NOT_RUN:  # nothing else to say: the method's own training is what is missing
        return Judgement(NOT_COMPARABLE, note)
    return replace(judgement, reproduced="; ".join(filter(None, [note, judgement.reproduced])))


def claim_row(claim: Claim, name: str, method, ev: Evidence, setting: tuple, lost: pd.DataFrame) -> dict | None:
    """One claim on one dataset x backbone (`lost`: the method's diverged rows there); None: no row here."""
    if claim.check is not None:
        needed = lost[~at_no_pruning(method, lost)] if claim.every_budget else None
        return {"setting": "shape", **vars(with_divergence(judge_shape(claim, name, method, ev), lost, needed))}
    if claim.accuracy is None:
        return None  # a published number not in accuracy at a cost: its own setting's row says not run
    schedule = schedule_fraction(claim, ev.rows[ev.rows["method"] == name])
    paper = setting == (claim.dataset, claim.backbone) and (schedule or 0) >= 1 - 1e-9
    return {"setting": "paper" if paper else "stand-in", "schedule": schedule, "published": published_text(claim),
            **vars(with_divergence(judge_numeric(claim, name, ev), lost))}


def method_rows(name: str, method, evidence: dict, diverged: pd.DataFrame, ran: bool) -> list[dict]:
    """A method's rows: each claim on each dataset x backbone (a numeric claim's own setting as 'not run' when
    absent; only those when the method did not run), then its sanity rows."""
    out = []
    for claim in type(method).__dict__.get("claims", ()):  # declared by this class, not inherited
        base = {"method": name, "claim": claim.id, "text": claim.text, "source": claim.source}
        if claim.check is None and (claim.dataset, claim.backbone) not in evidence:
            out.append({**base, "setting": "paper", "dataset": claim.dataset, "backbone": claim.backbone,
                        "published": published_text(claim), **vars(Judgement(NOT_RUN))})
        for (dataset, backbone), ev in (evidence.items() if ran else ()):
            lost = diverged[(diverged["dataset"] == dataset) & (diverged["backbone"] == backbone)
                            & (diverged["method"] == name)]
            row = claim_row(claim, name, method, ev, (dataset, backbone), lost)
            if row is not None:
                published = shape_published(claim, name, ev, dataset, backbone) if claim.check else row.pop("published")
                if getattr(method, "deviations", ()):
                    published += f"; deviations here: {', '.join(method.deviations)} (docs/choices.md)"
                out.append({**base, "dataset": dataset, "backbone": backbone, "published": published, **row})
    for (dataset, backbone), ev in evidence.items():
        judgement = judge_sanity(method, name, ev) if getattr(method, "no_pruning", None) is not None else None
        if judgement is not None:
            out.append({"method": name, "claim": SANITY.id, "text": SANITY.text, "source": SANITY.source,
                        "dataset": dataset, "backbone": backbone, "setting": "sanity", "published": SANITY.published,
                        **vars(judgement)})
    return out


def claims_table(summary: pd.DataFrame, methods: dict, records: Callable | None = None) -> pd.DataFrame:
    """One row per claim and setting that ran (a numeric claim's own setting as 'not run' when absent) of the
    `methods` (name -> Method; one not in `summary` gets only those 'not run' rows). `records`: row ->
    per-sample frame (default: read the row's `records` path)."""
    import pandas as pd

    ok = summary["status"] == "ok" if "status" in summary else pd.Series(True, index=summary.index)
    measured, diverged = summary[ok], summary[~ok]
    parents = derived_parents(methods)
    identities = {n: m.no_pruning for n, m in methods.items()
                  if isinstance(getattr(m, "no_pruning", None), (int, float))}
    evidence = {(d, b): Evidence(measured[(measured["dataset"] == d) & (measured["backbone"] == b)], records, parents,
                                 identities)
                for d, b in summary[["dataset", "backbone"]].drop_duplicates().itertuples(index=False)}
    out = [row for name, method in sorted(methods.items())
           for row in method_rows(name, method, evidence, diverged, name in set(summary["method"]))]
    table = pd.DataFrame(out, columns=COLUMNS)
    table["seeds"] = table["seeds"].fillna(0).astype(int)
    return table


def noise_table(summary: pd.DataFrame, records: Callable | None = None,
                parents: dict[str, str] | None = None) -> pd.DataFrame:
    """Each method's seed variance per dataset x backbone: its own (over its replicated points, with its degrees
    of freedom), the one its estimates use (`Evidence.seed_variance`: whose, df), the test-set 95 % half-width of
    one accuracy at its most-replicated point and the smallest difference between two single runs the run
    resolves there (95 %: both runs' seed variance and two independent test-set draws, t quantile)."""
    import pandas as pd

    out = []
    for (dataset, backbone), rows in summary.groupby(["dataset", "backbone"]):
        ev = Evidence(rows, records, parents)
        for method in sorted(rows["method"].unique()):
            own, used = ev.seed_variance(method, own=True), ev.seed_variance(method)
            pts = ev.points(method)
            p = pts.loc[pts["seeds"].idxmax()]
            one = interval(ev.at_point(method, p["train_budget"], p["eval_budget"]))
            two_runs = Interval(0.0, 2 * one.test_var, (SeedTerm(2.0, used),))
            out.append({"dataset": dataset, "backbone": backbone, "method": method, "point": f"{p['train_budget']:g}/"
                        f"{p['eval_budget']:g}", "seeds": int(p["seeds"]), "own_sd_pt": math.sqrt(own.value) * 100,
                        "own_df": own.df, "spread_of": used.source, "seed_sd_pt": math.sqrt(used.value) * 100,
                        "seed_df": used.df, "given": used.given,
                        "test_half_width_pt": stats.t_quantile(math.inf) * math.sqrt(one.test_var) * 100,
                        "resolvable_pt": two_runs.half_width * 100})
    return pd.DataFrame(out)
