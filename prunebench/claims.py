"""Published claims beside reproduced numbers: each method declares its paper's checkable claims
as data (`Method.claims`); the gather step judges them on the summary rows.

A numeric claim names its published setting (dataset, backbone) and point (fraction of dense MACs,
accuracy; FLOPs converted to MACs = FLOPs / 2): it is judged only where that setting ran. A shape
claim is a predicate over the rows of one dataset x backbone, judged on whatever config ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

HOLDS, FAILS, PARTLY, NOT_RUN = "holds", "does not hold", "partly", "not run"


@dataclass(frozen=True)
class Claim:
    """One checkable claim of a method's paper."""

    id: str
    text: str                      # the claim in this harness's units
    source: str                    # paper, table or section
    dataset: str | None = None     # numeric claims: the published setting
    backbone: str | None = None
    macs_frac: float | None = None  # the published point: fraction of dense MACs (controller included)
    accuracy: float | None = None   # and its accuracy (0..1)
    tolerance: float = 0.005        # accuracy this far below the published one still holds
    published: str = ""             # how the paper states it, where not as accuracy at a MACs fraction
    # shape claims: rows of one dataset x backbone -> (verdict, reproduced), or None when its methods are absent
    check: Callable[[pd.DataFrame], tuple[str, str] | None] | None = None


def tally(hits: int, total: int) -> str:
    """The verdict of a claim that should hold at each of `total` points and holds at `hits`."""
    return HOLDS if hits == total else PARTLY if hits else FAILS


def points(rows: pd.DataFrame, method: str) -> pd.DataFrame:
    """A method's (train budget, eval budget) points: mean accuracy and MACs over seeds, a 95 % CI half-width."""
    sub = rows[rows["method"] == method]
    if sub.empty:
        return sub
    g = sub.groupby(["train_budget", "eval_budget"])
    out = g[["accuracy", "macs_frac", "num_blocks"]].mean()
    n = g["accuracy"].count()
    out["ci"] = (1.96 * g["accuracy"].std(ddof=1) / np.sqrt(n)).fillna(0.0)
    out["seeds"] = n
    return out.reset_index().sort_values("macs_frac")


def fmt_acc(acc: float, ci: float = 0.0) -> str:
    return f"{acc:.2%}" + (f" ± {ci:.2%}" if ci > 0 else "")


def accuracy_at(pts: pd.DataFrame, frac: float) -> float:
    """Accuracy interpolated at a MACs fraction along the points (nan outside their range)."""
    if pts.empty or not pts["macs_frac"].min() <= frac <= pts["macs_frac"].max():
        return float("nan")
    return float(np.interp(frac, pts["macs_frac"], pts["accuracy"]))


def beats_at_equal_macs(rows: pd.DataFrame, method: str, other: str):
    """Shape check: `method` is more accurate than `other` interpolated at each of `method`'s costs."""
    mine, theirs = points(rows, method), points(rows, other)
    if mine.empty or theirs.empty:
        return None
    pairs = [(p.accuracy, accuracy_at(theirs, p.macs_frac), p.macs_frac) for p in mine.itertuples()]
    pairs = [(a, b, f) for a, b, f in pairs if b == b]
    if not pairs:
        return PARTLY, f"{other} has no point at {method}'s costs"
    wins = sum(a > b for a, b, _ in pairs)
    return tally(wins, len(pairs)), "; ".join(
        f"{a:.2%} vs {b:.2%} at {f:.3f}" for a, b, f in pairs)


def judge_numeric(claim: Claim, method: str, rows: pd.DataFrame) -> tuple[str, str]:
    pts = points(rows, method)
    if pts.empty:
        return NOT_RUN, ""
    best = pts.iloc[(pts["macs_frac"] - claim.macs_frac).abs().argmin()]
    reproduced = f"{fmt_acc(best['accuracy'], best['ci'])} at {best['macs_frac']:.3f} of dense MACs"
    close_cost = abs(best["macs_frac"] / claim.macs_frac - 1) <= 0.1
    accurate = best["accuracy"] >= claim.accuracy - claim.tolerance
    if close_cost and accurate:
        return HOLDS, reproduced
    return (PARTLY if close_cost or accurate else FAILS), reproduced


def claims_table(summary: pd.DataFrame, methods: dict) -> pd.DataFrame:
    """One row per claim (per dataset x backbone that ran, for shape claims) of the `methods` (name -> Method)."""
    out = []
    settings = list(summary[["dataset", "backbone"]].drop_duplicates().itertuples(index=False))
    for name, method in sorted(methods.items()):
        for claim in type(method).__dict__.get("claims", ()):  # declared by this class, not inherited
            row = {"method": name, "claim": claim.id, "text": claim.text, "source": claim.source}
            if claim.check is None:
                ran = summary[(summary["dataset"] == claim.dataset) & (summary["backbone"] == claim.backbone)]
                judgeable = len(ran) and claim.accuracy is not None
                verdict, reproduced = judge_numeric(claim, name, ran) if judgeable else (NOT_RUN, "")
                out.append({**row, "config": f"{claim.dataset}/{claim.backbone}",
                            "published": claim.published or f"{claim.accuracy:.2%} at {claim.macs_frac:.3f} of dense MACs",
                            "reproduced": reproduced, "verdict": verdict})
                continue
            for dataset, backbone in settings:
                rows = summary[(summary["dataset"] == dataset) & (summary["backbone"] == backbone)]
                result = claim.check(rows)
                verdict, reproduced = result if result is not None else (NOT_RUN, "")
                out.append({**row, "config": f"{dataset}/{backbone}", "published": "(shape)",
                            "reproduced": reproduced, "verdict": verdict})
    columns = ["method", "claim", "text", "source", "config", "published", "reproduced", "verdict"]
    return pd.DataFrame(out, columns=columns)
