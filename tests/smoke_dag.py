"""Run Snakemake on a test's working directory, as a user would, and read a dry run's plan."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def path_without_this_environment() -> str:
    """PATH without the virtual environment's bin: the rules must not need an activated environment."""
    if sys.prefix == sys.base_prefix:
        return os.environ["PATH"]
    bin_dir = str(Path(sys.executable).parent)
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != bin_dir)


def _failing_scontrol() -> str:
    """A folder whose `scontrol` fails at once. Snakemake loads every installed executor plugin at start-up,
    and the Slurm one asks `scontrol show config`: with Slurm installed and its controller down (after the
    Slurm test stops it) that is 9 s of connection retries per start. A run without the Slurm profile needs no Slurm."""
    folder = Path(tempfile.gettempdir()) / f"prunebench-no-slurm-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    (folder / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (folder / "scontrol").chmod(0o755)
    return str(folder)


NO_SLURM = _failing_scontrol()


def snakemake(workdir, *args, config=None, check=True, timeout=600):
    path = path_without_this_environment()
    env = {**os.environ, "PATH": path if "--profile" in args else NO_SLURM + os.pathsep + path}
    cmd = [*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(config or workdir / "smoke.yaml"), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def planned_jobs(result) -> dict:
    """Job counts from a dry run's 'Job stats' table."""
    lines = result.stdout.splitlines()
    if "Job stats:" not in lines:
        return {}
    counts = {}
    for line in lines[lines.index("Job stats:") + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    counts.pop("total", None)
    return counts
