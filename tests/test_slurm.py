"""The smoke DAG through the Slurm profile on a one-node local Slurm: every rule a batch job, the local numbers."""

import os
import re
import shutil
import subprocess

import pandas as pd
import pytest
import yaml

from smoke_dag import REPO, snakemake

MODE = os.environ.get("PRUNEBENCH_SLURM_TEST")  # local: run where possible; required (CI): fail where not
# It changes the machine (a Debian package, /etc/slurm/slurm.conf, three daemons): only when asked.
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(
    MODE not in ("local", "required"),
    reason="brings up a one-node Slurm on this machine: set PRUNEBENCH_SLURM_TEST=local to run it")]
PROFILE = REPO / "workflow" / "profiles" / "slurm"
# Columns that a seed fixes; timings, latencies and the commit differ between any two runs, and the
# config hash covers the whole config.
DETERMINISTIC = ["dataset", "backbone", "method", "train_budget", "eval_budget", "seed", "accuracy", "macs_mean",
                 "macs_std", "macs_max", "macs_frac", "controller_macs", "blocks_mean"]
# dense: a plain train; dlp: a prepared artifact (the expert's ranks); dlp_oracle: derived from dlp's model;
# slimming: two budgets sharing a prepared, trained artifact. (FBS's is the same kind of dependency: left to the
# local smoke run, to keep CI inside its time.)
SLURM_METHODS = ["dense", "dlp", "dlp_oracle", "slimming"]


@pytest.fixture(scope="module")
def local_slurm():
    """Starts the test cluster (installing Slurm when missing); skips where that is impossible, unless CI requires it."""
    missing = pytest.fail if MODE == "required" else pytest.skip
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[slurm]'")
    already_up = shutil.which("sinfo") and subprocess.run(["sinfo"], capture_output=True).returncode == 0
    try:
        # Two job slots per core: each job starts Snakemake twice (sbatch's job, then srun's step),
        # single-threaded start-ups that overlap another job's compute. Threads per rule, and so the
        # numbers, are the profile's either way.
        env = {**os.environ, "PRUNEBENCH_SLURM_CPUS": str(2 * os.cpu_count())}
        result = subprocess.run([PROFILE / "local-cluster.sh", "start"], capture_output=True, text=True,
                                timeout=900, env=env)
    except (OSError, subprocess.TimeoutExpired) as error:
        missing(f"no local Slurm: {error}")
    if result.returncode != 0:
        missing(f"no local Slurm (local-cluster.sh start):\n{result.stdout[-2000:]}\n{result.stderr[-6000:]}")
    yield
    if not already_up:
        subprocess.run([PROFILE / "local-cluster.sh", "stop"], capture_output=True)


def test_slurm_profile_runs_the_dag_and_gives_the_local_numbers(local_slurm, smoke, tmp_path):
    """The smoke config's methods that between them use every rule and every kind of dependency (a
    prepared artifact, a derived method, budgets sharing an artifact): 16 Slurm jobs. The whole smoke DAG's 55
    (each starting Snakemake twice) would be past CI's budget."""
    cfg = yaml.safe_load((smoke / "smoke.yaml").read_text())
    cfg["methods"] = {name: cfg["methods"][name] for name in SLURM_METHODS}
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(cfg))
    result = snakemake(tmp_path, "--profile", str(PROFILE), timeout=1500)
    log = result.stdout + result.stderr
    assert len(re.findall(r"submitted with SLURM jobid", log)) == 16, log[-3000:]
    on_slurm = pd.read_csv(tmp_path / "results/tables/summary.csv")[DETERMINISTIC]
    local = pd.read_csv(smoke / "results/tables/summary.csv")[DETERMINISTIC]
    local = local[local["method"].isin(SLURM_METHODS)].reset_index(drop=True)
    assert set(on_slurm["method"]) == set(SLURM_METHODS)
    pd.testing.assert_frame_equal(on_slurm, local)
    assert (on_slurm["accuracy"] > 0).all()
