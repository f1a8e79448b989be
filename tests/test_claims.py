"""The claims table: numeric claims judged where their setting ran, shape claims on every config, the rest 'not run'."""

import pandas as pd

from prunebench.api import get_method
from prunebench.claims import Claim, claims_table


def _rows(rows):
    base = {"dataset": "cifar10", "backbone": "resnet110", "seed": 0, "num_blocks": 54}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_numeric_claim_holds_fails_or_is_not_run():
    summary = _rows([{"method": "blockdrop", "train_budget": 1, "eval_budget": 1, "accuracy": 0.935, "macs_frac": 0.36},
                     {"method": "blockdrop", "train_budget": 1, "eval_budget": 1, "accuracy": 0.937, "macs_frac": 0.36,
                      "seed": 1},
                     {"method": "fbs", "train_budget": 0.5, "eval_budget": 0.5, "accuracy": 0.5, "macs_frac": 0.3}])
    table = claims_table(summary, {"blockdrop": get_method("blockdrop"), "fbs": get_method("fbs")}).set_index("claim")
    assert table.loc["resnet110", "verdict"] == "holds"  # 93.6 % (mean of two seeds) at 0.36 vs 93.6 % at 0.358
    assert "93.60% ±" in table.loc["resnet110", "reproduced"]
    assert table.loc["m-cifarnet", "verdict"] == "not run"  # M-CifarNet is not a backbone of the harness
    assert table.loc["beats-static-width", "verdict"] == "not run"  # no uniform_width rows to compare with
    worse = summary.assign(accuracy=0.90)
    assert claims_table(worse, {"blockdrop": get_method("blockdrop")})["verdict"].iloc[0] == "partly"  # cost yes, accuracy no
    both_off = summary.assign(accuracy=0.90, macs_frac=0.6)
    assert claims_table(both_off, {"blockdrop": get_method("blockdrop")})["verdict"].iloc[0] == "does not hold"


def test_shape_claims_on_any_config():
    rows = [{"method": "dense", "train_budget": 1, "eval_budget": 1, "accuracy": 0.93, "macs_frac": 1.0}]
    for k in range(1, 55, 10):
        rows.append({"method": "dlp", "train_budget": 54, "eval_budget": k, "accuracy": 0.5 + k / 200, "macs_frac": k / 54})
        rows.append({"method": "random_drop", "train_budget": 54, "eval_budget": k, "accuracy": 0.4 + k / 200,
                     "macs_frac": k / 54})
    rows.append({"method": "dlp", "train_budget": 54, "eval_budget": 38, "accuracy": 0.928, "macs_frac": 0.7})
    table = claims_table(_rows(rows), {"dlp": get_method("dlp")}).set_index("claim")
    assert table.loc["beats-random", "verdict"] == "holds"
    assert table.loc["dense-at-70%", "verdict"] == "holds"  # 92.8 % at 38 of 54 blocks, dense 93 %
    assert table.loc["beats-blockdrop", "verdict"] == "not run"  # no BlockDrop rows
    assert set(table["config"]) == {"cifar10/resnet110"}


def test_claims_are_declared_by_the_class_not_inherited():
    class Parent:
        claims = (Claim("c", "a claim", "here", check=lambda rows: ("holds", "yes")),)

    class Child(Parent):
        pass

    summary = _rows([{"method": "x", "train_budget": 1, "eval_budget": 1, "accuracy": 0.5, "macs_frac": 1.0}])
    assert len(claims_table(summary, {"p": Parent(), "c": Child()})) == 1

