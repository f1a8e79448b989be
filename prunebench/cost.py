"""What a method costs to benchmark: wall-clock minutes and peak memory summed over its jobs, from
Snakemake's per-job benchmark files (one TSV per job: seconds `s`, peak resident memory `max_rss` in MB)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

STAGES = ("pretrain", "prepare", "train", "evaluate", "latency")


def parse_entry(entry: str) -> tuple[str, str, str, Path]:
    """'BACKBONE:METHOD:STAGE:PATH' -> its parts (the path may itself hold colons)."""
    parts = entry.split(":", 3)
    if len(parts) != 4 or parts[2] not in STAGES:
        raise ValueError(f"cost entry {entry!r} is not BACKBONE:METHOD:STAGE:PATH with a stage in {', '.join(STAGES)}")
    backbone, method, stage, path = parts
    return backbone, method, stage, Path(path)


def cost_table(entries: list[str]) -> pd.DataFrame:
    """One row per backbone x method: minutes per stage and in all, peak memory and job count (the
    shared pretraining is its own row, `pretrain`); jobs without a benchmark file (not run) are left out."""
    rows = []
    for backbone, method, stage, path in map(parse_entry, entries):
        if not path.exists():
            continue
        bench = pd.read_csv(path, sep="\t")
        rows.append({"backbone": backbone, "method": method, "stage": stage, "minutes": bench["s"].iloc[-1] / 60,
                     "peak_mb": bench["max_rss"].iloc[-1] if "max_rss" in bench else float("nan")})
    columns = ["backbone", "method", "jobs", *(f"{s}_min" for s in STAGES), "total_min", "peak_mb"]
    if not rows:
        return pd.DataFrame(columns=columns)
    jobs = pd.DataFrame(rows)
    minutes = jobs.pivot_table(index=["backbone", "method"], columns="stage", values="minutes", aggfunc="sum")
    table = minutes.reindex(columns=list(STAGES)).fillna(0.0).add_suffix("_min")
    table["total_min"] = table.sum(axis=1)
    grouped = jobs.groupby(["backbone", "method"])
    table["peak_mb"] = pd.to_numeric(grouped["peak_mb"].max(), errors="coerce")
    table["jobs"] = grouped.size()
    return table.reset_index()[columns].sort_values(["backbone", "total_min"], ascending=[True, False])


def with_training_images(table: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The cost table with each method's training per trained model, as the training loop counted it: the
    median over its models of images after pretraining (weights the evaluated model carries; a separate
    controller's own stage apart) and of the compute in dense training epochs."""
    columns = ["train_images", "policy_images", "train_epochs"]
    if not set(columns) <= set(summary):
        return table
    models = summary.dropna(subset=columns).drop_duplicates(["backbone", "method", "train_budget", "seed"])
    per_method = models.groupby(["backbone", "method"])[columns].median().reset_index()
    return table.merge(per_method, on=["backbone", "method"], how="left")
