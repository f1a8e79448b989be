import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from prunebench.backbones import build_backbone
from prunebench.flops import MAC_OPERATORS, Accountant
from prunebench.gates import ChannelGate, GatePolicy
from prunebench.prune import physically_pruned


def fvcore_conv_linear(net, shape):
    analysis = FlopCountAnalysis(net.eval(), torch.zeros(1, *shape))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return sum(v for op, v in analysis.by_operator().items() if op in MAC_OPERATORS)


@pytest.mark.parametrize("name,expected", [("resnet20", 40.55e6), ("resnet56", 125.49e6), ("resnet110", 252.89e6)])
def test_dense_macs_match_the_papers(name, expected):
    net = build_backbone(name, 10, 3, shortcut="pad")
    acc = Accountant(net, (3, 32, 32))
    assert acc.dense_macs == pytest.approx(expected, rel=1e-3)
    assert acc.dense_macs == fvcore_conv_linear(net, (3, 32, 32))


def test_conv_shortcut_adds_its_own_convs():
    pad = Accountant(build_backbone("resnet20", 10, 3, shortcut="pad"), (3, 32, 32)).dense_macs
    net = build_backbone("resnet20", 10, 3, shortcut="conv")
    conv = Accountant(net, (3, 32, 32)).dense_macs
    # two 1x1 projections: 16->32 on 16x16 and 32->64 on 8x8
    assert conv - pad == 16 * 32 * 16 * 16 + 32 * 64 * 8 * 8
    assert conv == fvcore_conv_linear(net, (3, 32, 32))


class StaticKeep(GatePolicy):
    def __init__(self, net, keep):
        super().__init__()
        self.masks = {u: torch.zeros(net.unit(u).out_channels).index_fill_(0, idx, 1.0) for u, idx in keep.items()}
        self.gated_units = frozenset(keep)

    def channel_gate(self, unit, pooled):
        return ChannelGate(self.masks[unit].expand(pooled.shape[0], -1))


@pytest.mark.parametrize("name,shape", [("resnet20", (3, 32, 32)), ("preresnet29", (1, 28, 28))])
def test_accountant_equals_fvcore_on_a_physically_pruned_copy(name, shape):
    net = build_backbone(name, 10, shape[0], shortcut="conv")
    g = torch.Generator().manual_seed(0)
    keep = {}
    for block in net.blocks:
        for unit in block.unit_names[:-1]:
            width = block.get_submodule(unit).out_channels
            k = int(torch.randint(1, width + 1, (1,), generator=g))
            keep[block.prefix + unit] = torch.randperm(width, generator=g)[:k].sort().values
    net.policy = StaticKeep(net, keep)
    acc = Accountant(net, shape)
    with torch.no_grad():
        _, trace = net.eval().run(torch.randn(3, *shape))
    counted = acc.backbone_macs(trace)
    small = physically_pruned(net, keep)
    assert small.policy is None
    assert counted.tolist() == [fvcore_conv_linear(small, shape)] * 3
    # and the smaller network computes the same function
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.allclose(net(x), small(x), atol=1e-5)


def test_skipped_blocks_and_input_side_sparsity():
    net = build_backbone("resnet8", 10, 3).eval()
    acc = Accountant(net, (3, 32, 32))

    class Policy(GatePolicy):
        gates_blocks = True
        gated_units = frozenset({"blocks.0.conv1"})

        def block_gate(self, index, pooled):
            return torch.tensor([1.0, 0.0]) if index == 2 else torch.ones(2)

        def channel_gate(self, unit, pooled):
            return ChannelGate(torch.tensor([[1.0] * 8 + [0.0] * 8] * 2))

    net.policy = Policy()
    with torch.no_grad():
        _, trace = net.run(torch.randn(2, 3, 32, 32))
    macs = acc.backbone_macs(trace)
    c = acc.units
    # block 0: conv1 keeps half its outputs, so conv2 sees half its inputs
    half = 0.5 * (c["blocks.0.conv1"].dense_macs + c["blocks.0.conv2"].dense_macs)
    last = c["blocks.2.conv1"].dense_macs + c["blocks.2.conv2"].dense_macs
    assert macs[0].item() == pytest.approx(acc.dense_macs - half)
    # sample 1 skips the last block, whose parameter-free shortcut zero-pads half the channels:
    # the classifier then sees those channels as structurally zero (the add is the union)
    assert macs[1].item() == pytest.approx(acc.dense_macs - half - last - 0.5 * c["fc"].dense_macs)
