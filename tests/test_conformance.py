import pytest

from prunebench.api import get_method, registered_methods
from prunebench.testing import check_method, check_no_pruning


@pytest.mark.parametrize("name", sorted(registered_methods()))
def test_registered_method_conforms(name):
    results = check_method(name)
    # backbone MACs never exceed dense; a controller's own cost comes on top (macs_frac may pass 1)
    assert all(0 <= r["accuracy"] <= 1 and r["backbone_macs_mean"] <= r["dense_macs"] * (1 + 1e-9)
               for r in results.values())


# RNP's p = 0 keeps every group only once its Q-function has learned to: the default run's sanity row checks it
LEARNED_IDENTITY = {"rnp"}


@pytest.mark.parametrize("name", sorted(n for n in registered_methods() if get_method(n).no_pruning is not None
                                        and not get_method(n).derived_from and n not in LEARNED_IDENTITY))
def test_no_pruning_costs_what_dense_costs(name):
    check_no_pruning(name)
