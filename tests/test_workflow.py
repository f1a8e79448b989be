"""The whole Snakemake DAG on the smoke config: tables, figures, report, incremental re-runs, notebook."""

import html
import json
import re
import shutil
import subprocess

import pandas as pd
import pytest
import torch
import yaml

from smoke_dag import REPO, planned_jobs, snakemake

pytestmark = pytest.mark.workflow


def test_summary_table_rows_and_columns(smoke):
    cfg = yaml.safe_load((smoke / "smoke.yaml").read_text())
    summary = pd.read_csv(smoke / "results/tables/summary.csv")
    expected = sum(len(m["train_budgets"]) * len(m.get("eval_budgets") or [None]) for m in cfg["methods"].values())
    assert len(summary) == expected
    assert set(summary["method"]) == set(cfg["methods"])
    for column in ("dataset", "backbone", "method", "train_budget", "eval_budget", "seed", "accuracy", "macs_mean",
                   "macs_std", "macs_max", "macs_frac", "controller_macs", "blocks_mean", "latency_b1_ms",
                   "latency_b8_ms", "speedup_b1", "macs_speedup", "config_hash", "versions", "git_commit",
                   "train_device", "train_precision", "eval_device"):
        assert column in summary, column
    backbone_frac = (summary["macs_mean"] - summary["controller_macs"]) / summary["dense_macs"]
    assert summary["accuracy"].between(0, 1).all() and (backbone_frac <= 1 + 1e-9).all()
    dense = summary[summary["method"] == "dense"].iloc[0]
    assert dense["macs_frac"] == pytest.approx(1.0)
    pareto = pd.read_csv(smoke / "results/tables/pareto.csv")
    assert {"acc@25%", "acc@50%", "acc@75%"} <= set(pareto) and set(pareto["method"]) == set(cfg["methods"])
    for name in ("summary.md", "summary.tex", "pareto.md"):
        assert (smoke / "results/tables" / name).stat().st_size > 0
    for figure in ("accuracy_vs_macs", "latency_vs_macs", "macs_histograms", "gate_widths", "training_curves"):
        assert (smoke / f"results/figures/{figure}.png").stat().st_size > 1000
    benchmarks = list((smoke / "results/benchmarks").rglob("*.tsv"))
    assert len(benchmarks) >= 10 and "max_rss" in benchmarks[0].read_text()


def test_claims_table_covers_the_seven_seed_methods(smoke):
    from prunebench.claims import COLUMNS, VERDICTS

    claims = pd.read_csv(smoke / "results/tables/claims.csv")
    assert {"blockdrop", "fbs", "dlp", "lcnet", "rnp", "sanp", "slimming"} <= set(claims["method"])
    assert list(claims) == COLUMNS and set(claims["verdict"]) <= set(VERDICTS)
    assert set(claims["setting"]) <= {"paper", "stand-in", "shape", "sanity"} and "sanity" in set(claims["setting"])
    judged = claims[claims["verdict"].isin(["holds", "does not hold"])]
    for margin, noise in zip(judged["distance"], judged["noise"]):  # each such row shows a distance beyond its noise
        assert abs(float(margin.split()[0])) >= float(noise.split()[0].strip("±")), (margin, noise)
    text = (smoke / "results/tables/claims.md").read_text()
    assert text.startswith("| method") and "**inconclusive**" in text
    noise = pd.read_csv(smoke / "results/tables/noise.csv")
    assert set(noise["method"]) == set(pd.read_csv(smoke / "results/tables/summary.csv")["method"])


def test_a_replicate_seed_also_retrains_the_no_pruning_point_that_a_sanity_row_judges():
    from prunebench.config import replicate_budgets, validate

    cfg = validate({"replicate_seeds": [1], "methods": {
        "rnp": {"train_budgets": [-1.0, -0.5, 0]}, "fbs": {"train_budgets": [0.25, 0.5, 0.75, 1.0]},
        "lcnet": {"train_budgets": [0, 20, 60]}, "uniform_width": {"train_budgets": [0.25, 0.5, 0.75]}}})
    assert replicate_budgets(cfg, "rnp", "resnet20") == [-0.5, 0]
    assert replicate_budgets(cfg, "fbs", "resnet20") == [0.5, 1.0]
    assert replicate_budgets(cfg, "lcnet", "resnet20") == [20, 0]
    assert replicate_budgets(cfg, "uniform_width", "resnet20") == [0.5]  # no no-pruning point among its budgets


def test_replicate_seeds_retrain_each_method_once_at_its_middle_budget(smoke):
    from prunebench.config import replicate_budgets, validate

    cfg = yaml.safe_load((smoke / "smoke.yaml").read_text())
    cfg["replicate_seeds"] = [1]
    changed = smoke / "replicates.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    dry = snakemake(smoke, "-n", "--cores", "2", config=changed)
    jobs = planned_jobs(dry)
    resolved = validate(cfg)
    trained = sum(len(replicate_budgets(resolved, m, "resnet8")) for m in cfg["methods"])
    assert replicate_budgets(resolved, "slimming", "resnet8") == [0.5]
    assert replicate_budgets(resolved, "dense", "resnet8") == replicate_budgets(resolved, "lcnet_seq", "resnet8") == []
    # one backbone and artifacts (seed 0's): one training per method; no latency for replicates
    assert jobs["train_method"] == jobs["evaluate"] == trained
    assert set(jobs) == {"train_method", "evaluate", "gather", "plot", "cost", "all"}
    slimming = next(job for job in dry.stdout.split("rule ") if "output: results/synthetic/resnet8/seed1/slimming/0.5/" in job)
    assert "seed0/slimming/artifacts/" in slimming and "seed0/slimming/0.7/model.pt" not in slimming


def test_exclusive_latency_runs_as_its_own_jobs_and_otherwise_inside_the_evaluation(smoke):
    cfg = yaml.safe_load((smoke / "smoke.yaml").read_text())
    assert cfg["latency"]["exclusive"] is False  # the smoke run: one process per model evaluates and times it
    assert (smoke / "results/synthetic/resnet8/seed0/dlp/3/latency/1.json").exists()
    assert not (smoke / "results/benchmarks/latency").exists()
    cfg["latency"]["exclusive"] = True  # the default config's: latency jobs apart, each holding every core
    changed = smoke / "exclusive.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    dry = snakemake(smoke, "-n", "--cores", "2", "--forceall", config=changed)
    jobs = planned_jobs(dry)
    assert jobs["latency"] == jobs["evaluate"] == jobs["train_method"]
    latency_jobs = [job for job in dry.stdout.split("rule ")[1:] if job.startswith("latency:")]
    assert latency_jobs and all("threads: 2" in job for job in latency_jobs)
    assert "--latency-out-dir" not in dry.stdout


def test_cost_table_has_every_method_and_pretraining(smoke):
    cost = pd.read_csv(smoke / "results/tables/cost.csv")
    cfg = yaml.safe_load((smoke / "smoke.yaml").read_text())
    assert set(cost["method"]) == set(cfg["methods"]) | {"pretrain"}
    assert (cost["total_min"] > 0).all() and (cost["jobs"] >= 2).sum() == len(cfg["methods"])  # train, evaluate
    dlp = cost.set_index("method").loc["dlp"]
    assert dlp["prepare_min"] > 0 and dlp["train_min"] > 0  # the expert's ranks and the training


def test_rerun_schedules_nothing(smoke):
    assert planned_jobs(snakemake(smoke, "-n", "--cores", "2")) == {}


def test_changing_one_method_reruns_only_its_jobs(smoke):
    cfg = yaml.safe_load((smoke / "smoke.yaml").read_text())
    cfg["methods"]["uniform_width"]["hp"]["finetune"]["lr"] = 0.02
    changed = smoke / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(snakemake(smoke, "-n", "--cores", "2", config=changed))
    n_uw = len(cfg["methods"]["uniform_width"]["train_budgets"])
    assert jobs == {"train_method": n_uw, "evaluate": n_uw, "gather": 1, "plot": 1, "cost": 1, "all": 1}


def test_a_derived_method_follows_its_parent(smoke):
    cfg = yaml.safe_load((smoke / "smoke.yaml").read_text())
    cfg["methods"]["lcnet"]["hp"]["slope"] = 0.02  # lcnet_seq runs lcnet's models: both re-run, nothing else
    changed = smoke / "changed_parent.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(snakemake(smoke, "-n", "--cores", "2", config=changed))
    n = len(cfg["methods"]["lcnet"]["train_budgets"]) + len(cfg["methods"]["lcnet_seq"]["train_budgets"])
    assert jobs == {"train_method": n, "evaluate": n, "gather": 1, "plot": 1, "cost": 1, "all": 1}
    budget = cfg["methods"]["lcnet_seq"]["train_budgets"][0]
    seq = smoke / f"results/synthetic/resnet8/seed0/lcnet_seq/{budget:g}/model.pt"
    assert torch.load(seq, weights_only=False)["meta"]["method"] == "lcnet_seq"


def test_artifacts_rerun_only_when_what_they_depend_on_changes(smoke):
    cfg = yaml.safe_load((smoke / "smoke.yaml").read_text())
    cfg["methods"]["blockdrop"]["hp"]["finetune"]["lr"] = 2e-4  # the curriculum policy does not depend on it
    changed = smoke / "changed.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    n = len(cfg["methods"]["blockdrop"]["train_budgets"])
    jobs = planned_jobs(snakemake(smoke, "-n", "--cores", "2", config=changed))
    assert jobs == {"train_method": n, "evaluate": n, "gather": 1, "plot": 1, "cost": 1, "all": 1}
    cfg["methods"]["blockdrop"]["hp"]["curriculum"]["lr"] = 2e-3  # ... but on this
    changed.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(snakemake(smoke, "-n", "--cores", "2", config=changed))
    assert jobs["prepare"] == 1 and jobs["train_method"] == n


def test_bad_config_fails_fast_with_the_key_path(smoke):
    cfg = yaml.safe_load((smoke / "smoke.yaml").read_text())
    cfg["pretrain"]["epochz"] = 3
    bad = smoke / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    result = snakemake(smoke, "-n", "--cores", "1", config=bad, check=False)
    assert result.returncode != 0 and "pretrain.epochz" in result.stdout + result.stderr
    cfg = yaml.safe_load((smoke / "smoke.yaml").read_text())
    cfg["methods"]["nonexistent_method"] = {"train_budgets": [1]}
    bad.write_text(yaml.safe_dump(cfg))
    result = snakemake(smoke, "-n", "--cores", "1", config=bad, check=False)
    assert result.returncode != 0 and re.search(r"registered methods: [a-z_, ]*\bdense\b", result.stdout + result.stderr)


def test_report(smoke):
    snakemake(smoke, "--report", str(smoke / "report.html"), "--cores", "1")
    assert (smoke / "report.html").stat().st_size > 10_000


@pytest.mark.slow
def test_report_shows_the_claims_table_and_figures_in_a_browser(smoke, tmp_path):
    """Headless Chromium clicks through the smoke run's report (tests/report_probe.html) and reads what it shows."""
    browser = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    if browser is None:
        pytest.fail("no Chromium: apt-get install chromium-headless-shell (`make test-slow` does)")
    snakemake(smoke, "--report", str(tmp_path / "report.html"), "--cores", "1")
    shutil.copy(REPO / "tests" / "report_probe.html", tmp_path)
    page = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           "--virtual-time-budget=20000", "--dump-dom", (tmp_path / "report_probe.html").as_uri()],
                          capture_output=True, text=True, timeout=120).stdout
    shown = json.loads(html.unescape(re.search(r'<pre id="out">(.*?)</pre>', page, re.S).group(1)))
    assert "error" not in shown, shown["error"]
    claims = (smoke / "results/tables/claims.csv").read_text()
    assert shown["tables"]["results/tables/claims.csv"] == claims
    figures = sorted(f"results/figures/{p.name}" for p in (smoke / "results/figures").glob("*.png"))
    assert sorted(shown["figures"]) == figures
    for figure, size in shown["figures"].items():
        assert size and min(size) > 300, (figure, size)


def test_notebook_executes_against_the_smoke_results(smoke, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PRUNEBENCH_RESULTS", str(smoke / "results"))
    nb = nbformat.read(REPO / "notebooks" / "analysis.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    assert any(o.get("output_type") == "display_data" or "image/png" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_a_diverging_method_is_a_result_and_the_dag_goes_on(smoke, tmp_path):
    import shutil

    work = tmp_path / "diverging"
    shutil.copytree(smoke, work, symlinks=True)  # the smoke run's results and Snakemake's records of them
    cfg = yaml.safe_load((work / "smoke.yaml").read_text())
    cfg["methods"]["uniform_width"]["hp"]["finetune"]["lr"] = 1e12  # its loss becomes NaN within a step or two
    (work / "smoke.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--cores", "2")  # exits 0
    summary = pd.read_csv(work / "results/tables/summary.csv")
    lost = summary[summary["method"] == "uniform_width"]
    assert (lost["status"] == "diverged").all() and lost["accuracy"].isna().all()
    assert lost["diverged"].str.contains("finetune, epoch 1").all()
    assert set(summary["method"]) == set(cfg["methods"]) and (summary.loc[summary["method"] != "uniform_width",
                                                                           "status"] == "ok").all()
    pareto = pd.read_csv(work / "results/tables/pareto.csv").set_index("method")
    assert pareto.loc["uniform_width", "diverged"] == len(lost)
    assert planned_jobs(snakemake(work, "-n", "--cores", "2")) == {}  # a re-run does not retrain it


def test_an_ablation_starts_from_its_methods_warm_up(smoke):
    run = smoke / "results/synthetic/resnet8/seed0"
    assert (run / "sanp/artifacts/warmup.pt").exists() and not (run / "sanp_fixed_k/artifacts").exists()


def test_every_rule_that_may_use_a_gpu_asks_slurm_for_one_on_a_gpu_partition():
    """Each rule that may run on a GPU declares gpu=1; the Slurm profile keeps it 0 on its CPU partition and, set
    to 1 as its SITE note says, the executor plugin asks for --gpus=1 for each (a whole node for none)."""

    plugin = pytest.importorskip("snakemake_executor_plugin_slurm.utils", reason="pip install -e '.[slurm]'")

    class Job:
        def __init__(self, **resources):
            self.resources = type("Resources", (dict,), {"__getattr__": dict.__getitem__})(resources)

    rules = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=rule |    rule )", smk.read_text(), flags=re.M):
            name = re.match(r"\s*rule (\w+):", block)
            if name:
                rules[name.group(1)] = "gpu=1" in block
    assert {r for r, gpu in rules.items() if gpu} == {"pretrain", "prepare", "train_method", "evaluate", "latency"}
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    for rule, gpu in rules.items():
        resources = {**profile["default-resources"], **profile["set-resources"].get(rule, {})}
        assert not gpu or resources["gpu"] == 0  # the CPU partition as shipped
        if gpu:
            on_a_gpu_partition = plugin.set_gres_string(Job(**{**resources, "gpu": 1}))
            assert on_a_gpu_partition.strip() == "--gpus=1"
        assert "--exclusive" not in str(resources.get("slurm_extra", ""))  # asked for by the user only
