"""The results' folder layout, shared by the workflow, the CLI and the tables (no pandas or torch here)."""

from __future__ import annotations

from pathlib import Path


def budget_str(budget) -> str:
    """A budget as it appears in result paths: 9, 0.5, 1 (never 9.0)."""
    return f"{float(budget):g}"


def run_dir(root, dataset, backbone, seed, method, train_budget) -> Path:
    """Folder of one trained model and its evaluations (the workflow's layout)."""
    return Path(root) / dataset / backbone / f"seed{int(seed)}" / method / budget_str(train_budget)


def budget_file(folder, budget, ext: str) -> Path:
    """<folder>/<budget>.<ext>: one budget's result file (a budget such as 0.5 has a dot: no with_suffix)."""
    return Path(folder) / f"{budget_str(budget)}.{ext}"
