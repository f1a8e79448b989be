import torch

from prunebench.api import RunContext, get_method
from prunebench.methods.baselines import RandomBlockPolicy, StaticChannelPolicy, branch_units, l1_keep_mask


def test_random_drop_keeps_exactly_b_blocks_uniformly():
    policy = RandomBlockPolicy(9, 3, seed=0)
    x = torch.randn(3000, 1, 28, 28)
    policy.begin(x)
    assert policy.keep.sum(1).eq(3).all()
    assert torch.allclose(policy.keep.mean(0), torch.full((9,), 1 / 3), atol=0.04)
    again = RandomBlockPolicy(9, 3, seed=0)
    again.begin(x[:50])
    assert torch.equal(again.keep, policy.keep[:50])  # depends on the image, not the batch
    other = RandomBlockPolicy(9, 3, seed=1)
    other.begin(x[:50])
    assert not torch.equal(other.keep, policy.keep[:50])


def test_uniform_width_keeps_the_same_fraction_everywhere(tiny):
    backbone, data = tiny
    method = get_method("uniform_width")
    net = method.train(backbone, data, 0.5, method.resolve_hp({"finetune": {"epochs": 0}}), RunContext())
    assert isinstance(net.policy, StaticChannelPolicy)
    for unit in branch_units(net):
        mask = getattr(net.policy, net.policy.names[unit])
        assert mask.sum() == net.unit(unit).out_channels // 2
    # the kept filters are those of largest L1 norm
    unit = branch_units(backbone)[0]
    norms = backbone.unit(unit).conv.weight.abs().flatten(1).sum(1)
    kept = l1_keep_mask(backbone, unit, 0.5)
    assert norms[kept].min() >= norms[~kept].max()
