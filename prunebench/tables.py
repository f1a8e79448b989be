"""Tidy result tables from evaluation and latency JSONs: summary (CSV, Markdown, LaTeX) and Pareto."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .io import atomic_path
from .stats import pareto_frontier  # beside the statistics: the claims use it and must not import this module

KEYS = ["dataset", "backbone", "method", "train_budget", "eval_budget", "seed"]
PARETO_FRACS = (0.25, 0.5, 0.75)


def _read(path) -> dict:
    return json.loads(Path(path).read_text())


def summary_table(eval_jsons, latency_jsons=()) -> pd.DataFrame:
    """One row per dataset x backbone x method x train budget x eval budget x seed."""
    rows = []
    for path in eval_jsons:
        s = _read(path)
        row = {k: s.get(k) for k in KEYS}
        # a diverged training's rows carry no measurements (NaN), and say where it diverged
        row["status"] = s.get("status", "ok")
        row["diverged"] = "{stage}, epoch {epoch}, step {step}".format(**s["diverged"]) if "diverged" in s else None
        row.update({k: s.get(k, np.nan) for k in ("knob", "accuracy", "macs_mean", "macs_std", "macs_max", "macs_p05", "macs_p95", "macs_frac",
                                                  "controller_macs", "dense_macs", "blocks_mean", "blocks_max",
                                                  "num_blocks", "n", "params", "params_frac", "budget_compliance",
                                                  "train_images", "policy_images", "train_epochs",
                                                  "train_device", "train_precision", "eval_device")})
        row["epochs"] = s.get("epochs")
        records = Path(path).with_suffix(".parquet")  # the per-sample records the claims' noise comes from
        row["records"] = str(records) if records.exists() else None
        row["ours"] = bool(s.get("ours", False))  # a variant this harness adds, not the paper's
        row["static"] = bool(s.get("static", False))  # every sample costs the same
        row["macs_speedup"] = 1 / row["macs_frac"] if row["macs_frac"] > 0 else np.nan
        row.update(config_hash=s["config_hash"], git_commit=s["git_commit"],
                   versions=";".join(f"{k}={v}" for k, v in sorted(s["versions"].items())))
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(rows[0]) if rows else KEYS)
    lat_rows = []
    for path in latency_jsons:
        s = _read(path)
        if s.get("status") == "diverged":
            continue
        row = {k: s.get(k) for k in KEYS}
        for bs, r in s["batches"].items():
            row[f"latency_b{bs}_ms"] = r["model_ms"]
            if "model_ms_iqr" in r:  # the interquartile range over the repeats, as a share of the median
                row[f"latency_b{bs}_spread"] = (r["model_ms_iqr"][1] - r["model_ms_iqr"][0]) / r["model_ms"]
            row[f"dense_latency_b{bs}_ms"] = r["dense_ms"]
            row[f"speedup_b{bs}"] = r["speedup"]
            if "speedup_plain" in r:  # realized against the plain dense network, and as a share of the MACs speedup
                row[f"plain_speedup_b{bs}"] = r["speedup_plain"]
        row["latency_threads"] = s["threads"]
        row["latency_device"] = s["device"]
        lat_rows.append(row)
    if lat_rows and len(table):
        table = table.merge(pd.DataFrame(lat_rows), on=KEYS, how="left")
        for col in [c for c in table if c.startswith("plain_speedup_b")]:
            table[col.replace("plain_speedup", "realized_ratio")] = table[col] / table["macs_speedup"]
    return table.sort_values(KEYS, kind="stable").reset_index(drop=True)


def pareto_table(summary: pd.DataFrame, fracs=PARETO_FRACS) -> pd.DataFrame:
    """Accuracy at given fractions of dense MACs, interpolated on each method's frontier (seed means)."""
    out = []
    points = (summary.groupby(["dataset", "backbone", "method", "train_budget", "eval_budget"], dropna=False)
              [["macs_frac", "accuracy"]].mean().reset_index())  # diverged points: NaN, left off the frontier
    for (dataset, backbone, method), g in points.groupby(["dataset", "backbone", "method"], dropna=False):
        ok = g.dropna(subset=["accuracy"])
        frontier = pareto_frontier(ok["macs_frac"].to_numpy(), ok["accuracy"].to_numpy())
        row = {"dataset": dataset, "backbone": backbone, "method": method, "points": len(ok),
               "diverged": len(g) - len(ok)}
        for f in fracs:
            row[f"acc@{int(f * 100)}%"] = interpolate(frontier, f)
        out.append(row)
    return pd.DataFrame(out)


def interpolate(frontier: np.ndarray, frac: float) -> float:
    """Accuracy at `frac` along the frontier (a step down to the best cheaper point past its end)."""
    if len(frontier) == 0 or frac < frontier[0, 0] - 1e-12:
        return float("nan")
    if frac >= frontier[-1, 0]:
        return float(frontier[-1, 1])
    return float(np.interp(frac, frontier[:, 0], frontier[:, 1]))


def write_tables(summary: pd.DataFrame, out_dir) -> None:
    """summary.csv/.md/.tex, pareto.csv/.md, claims.csv/.md (the published claims of the methods present, judged
    against the noise measured in these rows) and noise.csv/.md (each method's noise figure), written atomically."""
    from .api import get_method, registered_methods
    from .claims import VERDICTS, claims_table, derived_parents, noise_table

    out_dir = Path(out_dir)
    pareto = pareto_table(summary)
    registered = registered_methods()
    methods = {m: get_method(m) for m in summary["method"].unique() if m in registered}
    absent = {}  # registered methods the config lacks: their published settings get "not run" rows
    for name in sorted(set(registered) - set(methods)):
        try:
            absent[name] = get_method(name)
        except Exception as err:  # a broken plugin the run does not use must not fail its tables
            print(f"claims: method {name!r} not loaded ({err}): its claims get no rows", file=sys.stderr)
    claims = claims_table(summary, {**methods, **absent})
    measured = summary[summary["status"] == "ok"]
    noise = noise_table(measured, parents=derived_parents(methods)) if measured["records"].notna().all() else pd.DataFrame()
    short = summary[[c for c in [*KEYS, "status", "ours", "static", "accuracy", "macs_mean", "macs_frac", "blocks_mean", "macs_speedup",
                                 "params_frac", "budget_compliance", "train_images", "policy_images", "latency_b1_ms", "plain_speedup_b1",
                                 "plain_speedup_b64", "realized_ratio_b1", "realized_ratio_b64"] if c in summary]]
    for frame, name in ((summary, "summary"), (pareto, "pareto"), (claims, "claims"), (noise, "noise")):
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    with atomic_path(out_dir / "summary.md") as tmp:
        tmp.write_text(short.to_markdown(index=False, floatfmt=".4g") + "\n")
    with atomic_path(out_dir / "summary.tex") as tmp:
        tmp.write_text(short.to_latex(index=False, float_format="%.4g"))
    with atomic_path(out_dir / "pareto.md") as tmp:
        tmp.write_text(pareto.to_markdown(index=False, floatfmt=".4f") + "\n")
    with atomic_path(out_dir / "noise.md") as tmp:
        tmp.write_text(noise.to_markdown(index=False, floatfmt=".2f") + "\n")
    legend = "".join(f"- **{verdict}**: {meaning}\n" for verdict, meaning in VERDICTS.items())
    with atomic_path(out_dir / "claims.md") as tmp:
        tmp.write_text(claims.drop(columns=["source"]).to_markdown(index=False, floatfmt=".3g") + "\n\n" + legend)
