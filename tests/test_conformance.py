import pytest

from prunebench.api import registered_methods
from prunebench.testing import check_method


@pytest.mark.parametrize("name", sorted(registered_methods()))
def test_registered_method_conforms(name):
    results = check_method(name)
    # backbone MACs never exceed dense; a controller's own cost comes on top (macs_frac may pass 1)
    assert all(0 <= r["accuracy"] <= 1 and r["backbone_macs_mean"] <= r["dense_macs"] * (1 + 1e-9)
               for r in results.values())
