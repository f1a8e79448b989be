"""The paper config: its dry run lists every seed method's jobs; a shortened copy runs end to end (slow)."""

import re
import shutil

import pandas as pd
import pytest
import yaml

from prunebench.api import get_method
from prunebench.config import TRAIN_SPEC_KEYS, load_config

from smoke_dag import REPO, snakemake

PAPER = REPO / "config" / "paper-cifar10.yaml"
SEED_METHODS = {"blockdrop", "fbs", "dlp", "slimming", "lcnet", "rnp", "sanp"}


def test_paper_config_dry_run_lists_every_seed_methods_jobs(tmp_path):
    dry_run = snakemake(tmp_path, "-n", config=PAPER).stdout
    trained = set(re.findall(r"/seed[012]/([a-z_0-9]+)/[^/\s]+/model\.pt", dry_run))
    assert SEED_METHODS <= trained
    assert set(load_config(PAPER)["methods"]) - {"dense"} <= trained
    assert "results/cifar10/resnet18/seed2/sanp/0.33/model.pt" in dry_run  # each method on its paper's backbone
    assert "results/cifar10/resnet110/seed0/dlp/54/latency" in dry_run


def shortened_paper_config() -> dict:
    """The paper config with the synthetic dataset in CIFAR-10's shape (512 training images, 64 test images:
    dlp_oracle's greedy search costs 1485 forwards of ResNet-110 per test image), one seed, one epoch per
    stage that runs (BlockDrop's curriculum: one per block, as it must) and few latency repeats;
    backbones, methods and budgets unchanged."""
    cfg = load_config(PAPER)
    cfg["data"] = {"name": "synthetic", "val_size": 0,
                   "synthetic": {"n_train": 512, "n_test": 64, "num_classes": 10, "channels": 3, "size": 32}}
    cfg["seeds"] = [0]
    cfg["device"] = "auto"  # the paper config asks for a GPU; the shortened one runs anywhere
    cfg["pretrain"]["epochs"] = 1
    cfg["latency"] = {"batch_sizes": [1, 64], "warmup": 1, "repeats": 3}
    counts = {"expert_images": 32, "recalibrate_images": 128, "rounds": 1, "q_steps": 5, "iterations": 2}
    for name, entry in cfg["methods"].items():
        if get_method(name).derived_from:
            entry.pop("hp")  # a derived method takes its parent's
            continue
        for key, value in entry["hp"].items():
            if isinstance(value, dict) and set(value) <= TRAIN_SPEC_KEYS:
                value["epochs"] = min(value.get("epochs", 1), 1)  # a stage that is off (0) stays off
            elif key in counts:
                entry["hp"][key] = counts[key]
    cfg["methods"]["blockdrop"]["hp"]["curriculum"]["epochs"] = 54  # ResNet-110's blocks
    return cfg


@pytest.mark.slow
def test_shortened_paper_config_runs_end_to_end(tmp_path):
    config = tmp_path / "paper-short.yaml"
    config.write_text(yaml.safe_dump(shortened_paper_config()))
    shutil.copy(PAPER, tmp_path / "paper-cifar10.yaml")
    snakemake(tmp_path, "--cores", "2", config=config, timeout=3 * 3600)
    summary = pd.read_csv(tmp_path / "results/tables/summary.csv")
    assert set(summary["method"]) == set(load_config(PAPER)["methods"])
    assert set(summary["backbone"]) == {"resnet56", "resnet110", "preresnet164", "resnet18"}
    dlp = summary[(summary["method"] == "dlp") & (summary["backbone"] == "resnet110")]
    assert {6, 20, 38, 54} <= set(dlp["eval_budget"].astype(int))  # DLP's published points: 10 %, 20/54, 70 %, 100 %
    claims = pd.read_csv(tmp_path / "results/tables/claims.csv")
    assert SEED_METHODS <= set(claims["method"])
    assert (tmp_path / "results/tables/claims.md").exists()
