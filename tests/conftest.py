import pytest
import torch

from prunebench.testing import tiny_setup


@pytest.fixture(scope="session")
def tiny():
    """(briefly pretrained ResNet-8 of width 8, synthetic dataset)."""
    return tiny_setup()


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
