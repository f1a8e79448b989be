"""The smoke DAG through the Slurm profile on a one-node local Slurm: every rule a batch job, the local numbers."""

import os
import shutil
import subprocess

import pandas as pd
import pytest

from smoke_dag import REPO, snakemake

pytestmark = pytest.mark.slurm
PROFILE = REPO / "workflow" / "profiles" / "slurm"
# Columns that a seed fixes; timings, latencies and the commit differ between any two runs.
DETERMINISTIC = ["dataset", "backbone", "method", "train_budget", "eval_budget", "seed", "accuracy", "macs_mean",
                 "macs_std", "macs_max", "macs_frac", "controller_macs", "blocks_mean", "config_hash"]


@pytest.fixture(scope="module")
def local_slurm():
    """Starts the test cluster (installing Slurm when missing); skips where that is impossible, unless CI requires it."""
    missing = pytest.fail if os.environ.get("PRUNEBENCH_SLURM_TEST") == "required" else pytest.skip
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install -e '.[slurm]'")
    already_up = shutil.which("sinfo") and subprocess.run(["sinfo"], capture_output=True).returncode == 0
    try:
        result = subprocess.run([PROFILE / "local-cluster.sh", "start"], capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as error:
        missing(f"no local Slurm: {error}")
    if result.returncode != 0:
        missing(f"no local Slurm (local-cluster.sh start):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    yield
    if not already_up:
        subprocess.run([PROFILE / "local-cluster.sh", "stop"], capture_output=True)


def test_slurm_profile_runs_the_dag_and_gives_the_local_numbers(local_slurm, smoke, tmp_path):
    shutil.copy(smoke / "smoke.yaml", tmp_path / "smoke.yaml")
    result = snakemake(tmp_path, "--profile", str(PROFILE), timeout=1500)
    log = result.stdout + result.stderr
    assert "SLURM run ID" in log or "SLURM jobid" in log, log[-3000:]
    on_slurm = pd.read_csv(tmp_path / "results/tables/summary.csv")[DETERMINISTIC]
    local = pd.read_csv(smoke / "results/tables/summary.csv")[DETERMINISTIC]
    pd.testing.assert_frame_equal(on_slurm, local)
    assert (on_slurm["accuracy"] > 0).all()
