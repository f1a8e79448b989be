import shutil
import time

import pytest
import torch

from prunebench.testing import tiny_setup
from smoke_dag import REPO, snakemake


@pytest.fixture(scope="session")
def tiny():
    """(briefly pretrained ResNet-8 of width 8, synthetic dataset)."""
    return tiny_setup()


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """A working directory with the smoke DAG run locally on 2 cores (shared by the workflow and Slurm tests)."""
    workdir = tmp_path_factory.mktemp("smoke")
    shutil.copy(REPO / "config" / "smoke.yaml", workdir / "smoke.yaml")
    start = time.perf_counter()
    snakemake(workdir, "--cores", "2")
    print(f"smoke DAG: {time.perf_counter() - start:.0f} s")
    return workdir
