"""The claims table: verdicts from intervals that add test-set and seed noise, on hand-made rows and records."""

import numpy as np
import pandas as pd
import pytest

from prunebench.api import get_method
from prunebench import stats
from prunebench.claims import (FAILS, HOLDS, INCONCLUSIVE, NOT_COMPARABLE, NOT_RUN, Claim, Evidence, claims_table,
                               compare_at_costs, interval, judge_numeric, noise_text, shape_verdict)

N = 2000  # test images


def _correct(acc: float, seed: int) -> np.ndarray:
    """A per-sample correctness vector with exactly `acc` accuracy, in a seeded order."""
    c = np.zeros(N, dtype=bool)
    c[: int(round(acc * N))] = True
    return np.random.default_rng(seed).permutation(c)


def _table(points, dataset="cifar10", backbone="resnet110", epochs=None, num_blocks=54):
    """Summary rows and their records from (method, train budget, eval budget, seed, accuracy, macs_frac)."""
    rows, records = [], {}
    for i, (method, tb, eb, seed, acc, frac) in enumerate(points):
        rows.append({"dataset": dataset, "backbone": backbone, "method": method, "train_budget": tb,
                     "eval_budget": eb, "seed": seed, "accuracy": acc, "macs_frac": frac, "num_blocks": num_blocks,
                     "dense_macs": 1.0, "epochs": epochs or {"pretrain": 164}})
        records[(method, tb, eb, seed)] = pd.DataFrame({"correct": _correct(acc, 1000 + i),
                                                        "macs": np.full(N, frac)})
    frame = pd.DataFrame(rows)
    return frame, lambda row: records[(row["method"], row["train_budget"], row["eval_budget"], row["seed"])]


BLOCKDROP = {"blockdrop": get_method("blockdrop")}


def _blockdrop(acc_at_36, dense=0.932, seeds=(0,), spread=0.0, **kw):
    pts = [("dense", 1, 1, 0, dense, 1.0)]
    for s in seeds:
        pts += [("blockdrop", 2, 2, s, acc_at_36 + spread * (s - 0.5), 0.30),
                ("blockdrop", 5, 5, s, acc_at_36 + spread * (s - 0.5), 0.42)]
    return _table(pts, **kw)


def test_interpolation_between_two_points_and_a_holding_drop():
    summary, records = _table([("dense", 1, 1, 0, 0.932, 1.0), ("blockdrop", 2, 2, 0, 0.95, 0.30),
                               ("blockdrop", 5, 5, 0, 0.98, 0.40)])
    j = judge_numeric(get_method("blockdrop").claims[0], "blockdrop", Evidence(summary, records))
    # at 0.358: 0.95 + 0.58 * 0.03 = 96.74 %, +3.54 pt from dense; the boundary: published +0.40 pt - margin 0.5
    assert "96.74%" in j.reproduced and "+3.54 pt" in j.reproduced
    assert j.verdict == HOLDS


def test_a_margin_inside_the_noise_is_inconclusive():
    # a drop of 1.1 pt against a boundary of 0.1 pt (published gain 0.4 pt - margin 0.5): 1 pt past it, while
    # 2000 test images of two independent models give about +-1.6 pt
    summary, records = _blockdrop(0.921)
    row = claims_table(summary, BLOCKDROP, records).iloc[0]
    assert row["verdict"] == INCONCLUSIVE and row["seeds"] == 1
    assert "seeds unmeasured" in row["noise"] and "normal" in row["noise"]  # nothing replicated: test-set noise only


def test_far_outside_the_noise_does_not_hold_and_shows_its_margin():
    summary, records = _blockdrop(0.85)
    row = claims_table(summary, BLOCKDROP, records).iloc[0]
    assert row["verdict"] == FAILS
    margin, noise = float(row["distance"].split()[0]), float(row["noise"].split()[0].strip("±"))
    assert -margin > noise  # the row itself shows a margin larger than its noise


def test_seed_spread_widens_the_interval():
    one, r1 = _blockdrop(0.92)
    two, r2 = _blockdrop(0.92, seeds=(0, 1), spread=0.04)
    n1 = claims_table(one, BLOCKDROP, r1).iloc[0]
    n2 = claims_table(two, BLOCKDROP, r2).iloc[0]
    assert n2["seeds"] == 2
    assert float(n2["noise"].split()[0].strip("±")) > float(n1["noise"].split()[0].strip("±"))


def test_a_published_cost_outside_the_curve_is_not_comparable():
    summary, records = _table([("dense", 1, 1, 0, 0.932, 1.0), ("blockdrop", 5, 5, 0, 0.93, 0.45),
                               ("blockdrop", 8, 8, 0, 0.935, 0.6)])
    row = claims_table(summary, BLOCKDROP, records).iloc[0]
    assert row["verdict"] == NOT_COMPARABLE
    assert "0.092 below its cheapest" in row["reproduced"]


def test_stand_in_and_paper_settings():
    short, records = _blockdrop(0.936, epochs={"pretrain": 16, "curriculum": 5000, "finetune": 2000})
    row = claims_table(short, BLOCKDROP, records).iloc[0]
    assert row["setting"] == "stand-in" and abs(row["schedule"] - 16 / 164) < 1e-9
    full, records = _blockdrop(0.936, epochs={"pretrain": 164, "curriculum": 5000, "finetune": 2000})
    assert claims_table(full, BLOCKDROP, records).iloc[0]["setting"] == "paper"
    other, records = _blockdrop(0.936, dataset="fashion_mnist", backbone="resnet20",
                                epochs={"pretrain": 164, "curriculum": 5000, "finetune": 2000})
    table = claims_table(other, BLOCKDROP, records)
    assert list(table["setting"]) == ["paper", "stand-in"]  # the paper's setting did not run: its own row
    assert list(table["verdict"])[0] == NOT_RUN and table.iloc[1]["dataset"] == "fashion_mnist"


def test_a_shape_claim_with_one_loss_beyond_noise_does_not_hold():
    pts = [("dense", 1, 1, 0, 0.93, 1.0)]
    for k, (mine, theirs) in enumerate([(0.80, 0.60), (0.85, 0.70), (0.70, 0.90)], start=1):
        pts += [("dlp", 9, k, 0, mine, k / 9), ("random_drop", 9, k, 0, theirs, k / 9)]
    summary, records = _table(pts)
    table = claims_table(summary, {"dlp": get_method("dlp")}, records).set_index("claim")
    row = table.loc["beats-random"]
    assert row["verdict"] == FAILS and row["reproduced"].startswith("won 2, lost 1, within noise 0")
    assert table.loc["beats-blockdrop", "verdict"] == NOT_RUN  # no BlockDrop rows


def test_shape_verdict_holds_only_with_a_win_and_no_loss():
    pts = [("fbs", 0.5, 0.5, 0, 0.90, 0.5), ("uniform_width", 0.25, 0.25, 0, 0.80, 0.3),
           ("uniform_width", 0.75, 0.75, 0, 0.90, 0.7)]
    summary, records = _table(pts)
    ev = Evidence(summary, records)
    j = shape_verdict(compare_at_costs(ev, "fbs", "uniform_width"))
    assert j.verdict == HOLDS  # 90 % vs 85 % interpolated: 5 pt beyond +-2 pt of test noise
    close, records = _table([("fbs", 0.5, 0.5, 0, 0.851, 0.5), *pts[1:]])
    assert shape_verdict(compare_at_costs(Evidence(close, records), "fbs", "uniform_width")).verdict == INCONCLUSIVE
    assert shape_verdict([]).verdict == NOT_COMPARABLE


def test_probability_of_beating_with_seed_noise():
    pts = [("fbs", 0.5, 0.5, s, 0.88 + 0.01 * s, 0.5) for s in (0, 1)]
    pts += [("uniform_width", 0.5, 0.5, s, 0.85 + 0.01 * s, 0.5) for s in (0, 1)]
    summary, records = _table(pts)
    j = shape_verdict(compare_at_costs(Evidence(summary, records), "fbs", "uniform_width"))
    p, low = (float(x.strip("[],")) for x in j.p_better.split()[:2])
    assert j.verdict == HOLDS and j.seeds == 2 and low > 0.5 and p > low


def test_dlp_at_ten_percent_of_the_blocks_is_a_row():
    pts = [("dense", 1, 1, 0, 0.93, 1.0)] + [("dlp", 9, k, 0, 0.5 + 0.05 * k, k / 9) for k in range(1, 10)]
    summary, records = _table(pts, dataset="fashion_mnist", backbone="resnet20", num_blocks=9)
    table = claims_table(summary, {"dlp": get_method("dlp")}, records)
    row = table[(table["claim"] == "at-10%") & (table["setting"] == "stand-in")].iloc[0]
    assert "1 of 9 blocks" in row["reproduced"] and row["verdict"] == FAILS  # 55 % is 38 pt below dense


def test_claims_are_declared_by_the_class_not_inherited():
    from prunebench.claims import Judgement

    class Parent:
        claims = (Claim("c", "a claim", "here", check=lambda ev: Judgement(HOLDS, "yes")),)

    class Child(Parent):
        pass

    summary, records = _table([("p", 1, 1, 0, 0.5, 1.0), ("c", 1, 1, 0, 0.5, 1.0)])
    assert len(claims_table(summary, {"p": Parent(), "c": Child()}, records)) == 1


def test_a_sanity_row_for_each_knob_at_no_pruning():
    # RNP at p = 0: at dense cost and as accurate (the same images right) holds; a p = 0 that prunes to half
    # the cost does not hold, whatever its accuracy; no p = 0 in the run: no row
    dense = _correct(0.93, 7)
    rows = [("dense", 1, 1, 0, 0.93, 1.0), ("rnp", 0.0, 0.0, 0, 0.93, 1.0), ("rnp", -0.01, -0.01, 0, 0.90, 0.4)]
    summary, records = _table(rows)
    frames = {("dense", 0.93): dense, ("rnp", 0.93): dense}

    def same_images(row):
        frame = records(row)
        key = (row["method"], row["accuracy"])
        return frame.assign(correct=frames[key]) if key in frames else frame

    rnp = {"rnp": get_method("rnp")}
    sanity = claims_table(summary, rnp, same_images).set_index("claim").loc["sanity"]
    assert sanity["verdict"] == HOLDS and sanity["setting"] == "sanity" and "+0.00 pt" in sanity["reproduced"]
    halved, halved_records = _table([rows[0], ("rnp", 0.0, 0.0, 0, 0.93, 0.5), rows[2]])
    row = claims_table(halved, rnp, halved_records).set_index("claim").loc["sanity"]
    assert row["verdict"] == FAILS and row["distance"].startswith("-40.00 pt of dense MACs")  # from 0.9: learned
    without = summary[summary["train_budget"] != 0.0]
    assert "sanity" not in set(claims_table(without, rnp, records)["claim"])


def test_a_derived_method_without_replicates_takes_its_parents_seed_variance():
    # DLP with ten seeds (9 df: enough on its own); another method's two seeds make the pool differ from it
    pts = [("dlp", 9, 9, s, 0.90 + 0.002 * s, 1.0) for s in range(10)] + [("dlp_random", 9, 9, 0, 0.85, 1.0)]
    pts += [("fbs", 0.5, 0.5, s, 0.80 + 0.05 * s, 0.5) for s in (0, 1)]
    summary, records = _table(pts)
    v = Evidence(summary, records, {"dlp_random": "dlp"}).seed_variance("dlp_random")
    assert v.source == "dlp" and v.df == 9 and v.value == pytest.approx(np.var([0.002 * s for s in range(10)], ddof=1))
    alone = Evidence(summary, records).seed_variance("dlp_random")  # not known as derived: the pool (10 df)
    assert alone.source == "pooled" and alone.df == 10


def test_seed_variance_is_pooled_across_methods_below_eight_degrees_of_freedom():
    pts = [("dense", 1, 1, 0, 0.93, 1.0)]
    for m, frac in (("fbs", 0.5), ("uniform_width", 0.5), ("sanp", 0.5)):
        pts += [(m, frac, frac, s, 0.90 + 0.01 * s, frac) for s in (0, 1, 2)]
    summary, records = _table(pts)
    ev = Evidence(summary, records)
    assert ev.seed_variance("fbs", own=True).df == 2 and ev.seed_variance("fbs").source == "pooled"
    assert ev.seed_variance("fbs").df == 6 and ev.seed_variance("dense") == stats.FIXED  # the one backbone
    j = shape_verdict(compare_at_costs(ev, "fbs", "uniform_width"))
    assert "pooled 6 df, given seed 0's backbone" in j.noise and "t " in j.noise


def test_at_every_budget_holds_only_if_every_point_holds_and_shows_the_weakest():
    # DLP beats random dropping by 20 and 10 pt at 1 and 2 blocks but ties at 3: not "at every budget"
    pts = [("dense", 1, 1, 0, 0.93, 1.0)]
    for k, (mine, theirs) in enumerate([(0.80, 0.60), (0.85, 0.75), (0.88, 0.88)], start=1):
        pts += [("dlp", 9, k, 0, mine, k / 9), ("random_drop", 9, k, 0, theirs, k / 9)]
    summary, records = _table(pts, num_blocks=9)
    row = claims_table(summary, {"dlp": get_method("dlp")}, records).set_index("claim").loc["beats-random"]
    assert row["verdict"] == INCONCLUSIVE and row["reproduced"].startswith("won 2, lost 0, within noise 1 of 3")
    assert row["distance"].endswith("at 3 blocks")  # the weakest point, not the best (+20 pt at 1 block)
    wins, records = _table([p for p in pts if p[2] != 3], num_blocks=9)
    row = claims_table(wins, {"dlp": get_method("dlp")}, records).set_index("claim").loc["beats-random"]
    assert row["verdict"] == HOLDS and row["distance"].startswith("+10.00 pt at 2 blocks")


def test_holms_correction_across_the_points():
    # one point 2.1 standard errors above 0 holds (p 0.018 < 0.025); two such points do not both survive
    # Holm's step-down (the smaller p must be below 0.0125), though each interval alone lies above 0
    close = stats.Interval(0.021, 1e-4)
    assert close.low > 0 and shape_verdict([("1", close)]).verdict == HOLDS
    assert shape_verdict([("1", close), ("2", close)]).verdict == INCONCLUSIVE
    loss = stats.Interval(-0.021, 1e-4)
    assert shape_verdict([("1", loss)]).verdict == FAILS
    assert shape_verdict([("1", loss), ("2", stats.Interval(0.05, 1e-4))]).verdict == INCONCLUSIVE


def test_shape_rows_name_the_papers_setting_and_the_mismatch():
    pts = [("dense", 1, 1, 0, 0.93, 1.0)]
    pts += [(m, 9, k, 0, 0.5 + 0.04 * k, k / 9) for k in range(1, 10) for m in ("dlp", "random_drop")]
    pts += [("blockdrop", 2, 2, 0, 0.60, 0.30), ("blockdrop", 5, 5, 0, 0.75, 0.6)]
    summary, records = _table(pts, dataset="fashion_mnist", backbone="resnet20", num_blocks=9)
    table = claims_table(summary, {"dlp": get_method("dlp")}, records).set_index("claim")
    deviation = "; deviations here: one set of BN statistics per budget (docs/choices.md)"  # DLP's, on every row
    assert table.loc["beats-random", "published"] == \
        "(shape) paper: mini-imagenet (backbone not stated); here: other dataset (fashion_mnist)" + deviation
    assert table.loc["beats-blockdrop", "published"].startswith("(shape) paper: cifar10 resnet110 at 20 of 54 blocks")
    assert table.loc["beats-blockdrop", "published"].endswith("blocks kept (4 of 9)" + deviation)
    assert table.loc["policy-beats-random-blocks", "published"] == "(shape; ours: no paper setting)" + deviation
    summary, records = _table(pts, dataset="cifar10", backbone="resnet20", num_blocks=9)  # the second default
    table = claims_table(summary, {"dlp": get_method("dlp")}, records).set_index("claim")
    assert "; here: the paper's dataset, other backbone (resnet20), blocks kept" in table.loc["beats-blockdrop", "published"]


def test_a_claim_about_pruning_is_not_decided_by_the_no_pruning_point():
    # SANP diverged at 0.3, 0.5 and 0.7: its lands-on-budget needs them and does not hold; at 1.0 alone, with
    # nothing diverged, nothing about pruning is judged
    pts = [("dense", 1, 1, 0, 0.93, 1.0), ("sanp", 1.0, 1.0, 0, 0.93, 1.0)]
    summary, records = _table(pts, dataset="cifar10", backbone="resnet18")
    sanp = {"sanp": get_method("sanp")}
    lost = pd.DataFrame([{**summary.iloc[1], "train_budget": b, "eval_budget": b, "accuracy": np.nan,
                          "status": "diverged"} for b in (0.3, 0.5, 0.7)])
    table = claims_table(pd.concat([summary.assign(status="ok"), lost], ignore_index=True), sanp, records)
    row = table.set_index("claim").loc["lands-on-budget"]
    assert row["verdict"] == FAILS and row["reproduced"].startswith("diverged at 0.3, 0.5, 0.7: the claim needs")
    assert claims_table(summary, sanp, records).set_index("claim").loc["lands-on-budget", "verdict"] == NOT_COMPARABLE
    # with a pruned budget it is judged there, its no-pruning point left out
    more, records = _table(pts + [("sanp", 0.5, 0.5, 0, 0.90, 0.52)], dataset="cifar10", backbone="resnet18")
    row = claims_table(more, sanp, records).set_index("claim").loc["lands-on-budget"]
    assert row["verdict"] == HOLDS and "0.5: 0.520" in row["reproduced"] and "1: " not in row["reproduced"]


def test_a_deterministic_cost_is_exact_and_an_identity_has_no_sanity_row():
    # LC-Net at coefficient 0 runs every gate open: every image costs dense MACs, no seed spread to borrow
    rows = [("dense", 1, 1, 0, 0.93, 1.0), ("lcnet", 0.0, 0.0, 0, 0.93, 1.0)]
    rows += [("lcnet", 0.01, 0.01, s, 0.90, 0.8 + 0.05 * s) for s in (0, 1)]
    summary, records = _table(rows)
    ev = Evidence(summary, records)
    cost = interval(ev.at_point("lcnet", 0.0, 0.0, value="macs"))
    assert cost.half_width == 0 and "exact" in noise_text(cost)
    spread = interval(ev.at_point("lcnet", 0.01, 0.01, value="macs"))  # the seeds' costs differ there: t at 1 df
    assert spread.half_width == pytest.approx(12.706 * 0.05 / 2, rel=1e-3) and "lcnet at 0.01 1 df" in noise_text(spread)
    # random dropping with every block kept is the dense network itself: no row to hold trivially
    summary, records = _table([("dense", 1, 1, 0, 0.93, 1.0), ("random_drop", 9, 9, 0, 0.93, 1.0)], num_blocks=9)
    assert "sanity" not in set(claims_table(summary, {"random_drop": get_method("random_drop")}, records)["claim"])


def test_a_learned_cost_is_judged_with_the_spread_of_its_own_replicated_training():
    # RNP replicated at p = -0.5 (costs 0.33 / 0.28) and at p = 0 (0.966 / 0.967): the sanity row's cost uses p = 0's
    # spread and holds above the learned floor; with p = -0.5's spread (p = 0 not replicated) it is inconclusive
    base = [("dense", 1, 1, 0, 0.93, 1.0)] + [("rnp", -0.5, -0.5, s, 0.88, c) for s, c in ((0, 0.33), (1, 0.28))]
    rnp = {"rnp": get_method("rnp")}
    wobble = 0.02 * (np.arange(N) % 2 - 0.5)  # images differ in cost (a per-image policy), with the same mean

    def per_image(table):
        summary, records = table
        return summary, lambda row: records(row).assign(macs=lambda r: r["macs"] + wobble * (row["method"] == "rnp"))
    both, records = per_image(_table(base + [("rnp", 0.0, 0.0, s, 0.93, c) for s, c in ((0, 0.966), (1, 0.967))]))
    one, records_one = per_image(_table(base + [("rnp", 0.0, 0.0, 0, 0.93, 0.966)]))
    cost = interval(Evidence(both, records).at_point("rnp", 0.0, 0.0, value="macs"))
    assert "rnp at 0 1 df" in noise_text(cost) and cost.half_width < 0.01
    borrowed = interval(Evidence(one, records_one).at_point("rnp", 0.0, 0.0, value="macs"))
    assert "rnp 1 df" in noise_text(borrowed) and borrowed.half_width > 0.2
    # a budget not replicated borrows the pruning budgets' spread, not the no-pruning point's (0.966 / 0.967)
    extra, records_extra = per_image(_table(base + [("rnp", 0.0, 0.0, s, 0.93, c) for s, c in ((0, 0.966), (1, 0.967))]
                                            + [("rnp", -1.0, -1.0, 0, 0.85, 0.17)]))
    ev = Evidence(extra, records_extra, identities={"rnp": 0.0})
    assert "rnp 1 df" in noise_text(interval(ev.at_point("rnp", -1.0, -1.0, value="macs")))
    # the cost holds, so the accuracy decides the row (its distance is in accuracy); borrowed, the cost decides
    held = claims_table(both, rnp, records).set_index("claim").loc["sanity"]
    assert "of dense MACs" not in held["distance"] and "above the 0.9 floor" in held["reproduced"] \
        and held["reproduced"].endswith(": holds")
    row = claims_table(one, rnp, records_one).set_index("claim").loc["sanity"]
    assert row["verdict"] == INCONCLUSIVE and "of dense MACs" in row["distance"]


def test_no_sanity_row_for_a_control_that_reruns_its_parents_model():
    # at all blocks dlp_random and dlp_oracle run DLP's model, dlp_pretrained the dense one: identities;
    # dlp_shared_bn's one set of BN statistics can differ from DLP's there, so it keeps its row
    names = ["dlp", "dlp_random", "dlp_oracle", "dlp_pretrained", "dlp_shared_bn"]
    rows = [("dense", 1, 1, 0, 0.93, 1.0)] + [(m, 9, 9, 0, 0.93, 1.0) for m in names]
    summary, records = _table(rows, num_blocks=9)
    table = claims_table(summary, {m: get_method(m) for m in names}, records)
    assert set(table[table["claim"] == "sanity"]["method"]) == {"dlp", "dlp_shared_bn"}


def test_a_method_the_config_lacks_gets_only_its_published_settings_not_run_rows():
    summary, records = _table([("dense", 1, 1, 0, 0.93, 1.0)], dataset="fashion_mnist", backbone="resnet20")
    table = claims_table(summary, {"lcnet_scratch": get_method("lcnet_scratch")}, records)
    assert len(table) == len(get_method("lcnet_scratch").claims) > 0
    assert set(table["verdict"]) == {NOT_RUN} and set(table["setting"]) == {"paper"}


def test_rnp_claims_judge_the_accuracy_half_and_the_random_action_control():
    rnp = {"rnp": get_method("rnp"), "rnp_random": get_method("rnp_random")}
    base = [("dense", 1, 1, 0, 0.93, 1.0), ("rnp", 0.0, 0.0, 0, 0.93, 0.97), ("rnp", -0.5, -0.5, 0, 0.90, 0.5),
            ("rnp", -1.0, -1.0, 0, 0.85, 0.2)]
    control = [("rnp_random", b, b, 0, 0.3, 0.48) for b in (0.0, -0.5, -1.0)]
    summary, records = _table(base + control)
    table = claims_table(summary, rnp, records).set_index("claim")
    assert table.loc["penalty-trades-cost", "verdict"] == HOLDS
    assert table.loc["beats-random-actions", "verdict"] == HOLDS
    rising = [base[0], base[1], ("rnp", -0.5, -0.5, 0, 0.99, 0.5), base[3]]  # accuracy rose as p fell
    summary, records = _table(rising + control)
    row = claims_table(summary, rnp, records).set_index("claim").loc["penalty-trades-cost"]
    assert row["verdict"] == FAILS and "accuracy rose beyond the noise at p 0 -> -0.5" in row["reproduced"]
