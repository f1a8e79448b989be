import pytest

from prunebench.api import registered_methods
from prunebench.methods.rnp import RNP
from prunebench.testing import check_method, check_no_pruning


@pytest.mark.parametrize("name", sorted(registered_methods()))
def test_registered_method_conforms(name):
    results = check_method(name)
    # backbone MACs never exceed dense; a controller's own cost comes on top (macs_frac may pass 1)
    assert all(0 <= r["accuracy"] <= 1 and r["backbone_macs_mean"] <= r["dense_macs"] * (1 + 1e-9)
               for r in results.values())


class RandomPrefix(RNP):
    """RNP whose greedy decisions are replaced by uniformly random ones: a learner that learns nothing."""

    name = "random_prefix"

    def train(self, backbone, data, budget, hp, run):
        net = super().train(backbone, data, budget, hp, run)
        net.policy.epsilon = 1.0
        return net


def test_a_policy_that_acts_at_random_fails_the_no_pruning_check():
    with pytest.raises(AssertionError, match="no more than random actions"):
        check_no_pruning(RandomPrefix())
