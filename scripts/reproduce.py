"""Run the default config through the CLI: pretrain, then every method x budget (train, evaluate, latency).

A stand-in for the Snakemake workflow: outputs that exist are not recomputed.
Usage: python scripts/reproduce.py [config/config.yaml] [results]
"""

import sys
from pathlib import Path

from prunebench.cli import main
from prunebench.config import load_config


def step(out: Path, *argv: str) -> None:
    if out.exists():
        print(f"up to date: {out}")
        return
    if main(list(argv)) != 0:
        sys.exit(f"step failed: prunebench {' '.join(argv)}")


def reproduce(config: str, results: Path, seed: int = 0) -> None:
    cfg = load_config(config)
    root = results / cfg["data"]["name"] / cfg["backbone"]["name"] / f"seed{seed}"
    common = ["--config", config, "--seed", str(seed)]
    backbone = root / "pretrain" / "model.pt"
    step(backbone, "pretrain", *common, "--out", str(backbone), "--metrics", str(root / "pretrain" / "metrics.json"))
    for method, entry in cfg["methods"].items():
        for train_budget in entry["train_budgets"]:
            folder = root / method / str(train_budget)
            model = folder / "model.pt"
            step(model, "train", *common, "--method", method, "--budget", str(train_budget),
                 "--backbone-model", str(backbone), "--out", str(model))
            for budget in entry["eval_budgets"] or [train_budget]:
                ev = folder / "eval" / f"{budget}"
                step(ev.with_suffix(".json"), "evaluate", *common, "--model", str(model), "--budget", str(budget),
                     "--records", str(ev.with_suffix(".parquet")), "--summary", str(ev.with_suffix(".json")))
                lat = folder / "latency" / f"{budget}.json"
                step(lat, "latency", *common, "--model", str(model), "--budget", str(budget), "--out", str(lat))


if __name__ == "__main__":
    reproduce(sys.argv[1] if len(sys.argv) > 1 else "config/config.yaml",
              Path(sys.argv[2] if len(sys.argv) > 2 else "results"))
