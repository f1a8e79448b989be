import pytest
import torch

from prunebench.backbones import build_backbone
from prunebench.gates import ChannelGate, ConvUnit, GatePolicy, UpfrontBlockGates


class RandomGates(GatePolicy):
    """Random block and channel gates (some exactly zero), reproducible per forward."""

    gates_blocks = True

    def __init__(self, net, parallel=False, units=None):
        super().__init__()
        self.widths = {u: net.unit(u).out_channels for u in net.unit_names()}
        self.gated_units = frozenset(units if units is not None else
                                     [u for u in net.unit_names() if not u.endswith("shortcut")])
        self.parallel = parallel
        self.g = torch.Generator()

    def begin(self, x):
        self.g.manual_seed(7)

    def block_gate(self, index, pooled):
        n = pooled.shape[0]
        return (torch.rand(n, generator=self.g) > 0.3).float() * torch.rand(n, generator=self.g)

    def channel_gate(self, unit, pooled):
        n, c = pooled.shape[0], self.widths[unit]
        scale = (torch.rand(n, c, generator=self.g) > 0.5).float() * torch.randn(n, c, generator=self.g)
        return ChannelGate(scale, 0.1 * (scale != 0).float())


def randomize_bn(net):
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("name,shortcut", [("resnet20", "pad"), ("resnet20", "conv"),
                                           ("preresnet29", "conv"), ("preresnet29", "pad")])
@pytest.mark.parametrize("parallel", [False, True])
def test_mask_and_skip_modes_agree(name, shortcut, parallel):
    torch.manual_seed(0)
    net = build_backbone(name, 10, 3, shortcut=shortcut).eval()
    randomize_bn(net)
    net.policy = RandomGates(net, parallel)
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        mask_logits, mask_trace = net.run(x, "mask")
        skip_logits, skip_trace = net.run(x, "skip")
    assert torch.allclose(mask_logits, skip_logits, atol=1e-4, rtol=1e-4)
    assert 0 < mask_trace.blocks_executed.float().mean() < net.num_blocks  # both kinds of block occurred
    for unit in mask_trace.active_in:
        assert torch.equal(mask_trace.active_in[unit], skip_trace.active_in[unit]), unit
        assert torch.equal(mask_trace.active_out[unit], skip_trace.active_out[unit]), unit


class BlockGates(UpfrontBlockGates):
    """Block gates drawn in begin: per block all open, all closed, 0/1 per row, or soft values;
    read up front by skip mode, or (upfront=False) block by block as any other policy's."""

    def __init__(self, upfront: bool, soft: bool):
        super().__init__()
        self.block_gates_upfront, self.soft = upfront, soft

    def begin(self, x):
        g = torch.Generator().manual_seed(3)
        n, k = x.shape[0], 40
        gates = (torch.rand(n, k, generator=g) > 0.4).float()
        if self.soft:
            gates = gates * torch.rand(n, k, generator=g)
        gates[:, 0::4], gates[:, 1::4] = 1.0, 0.0
        self.keep = gates


@pytest.mark.parametrize("name,shortcut", [("resnet20", "pad"), ("resnet20", "conv"), ("preresnet29", "pad")])
@pytest.mark.parametrize("upfront,soft", [(True, False), (True, True), (False, True)])
@pytest.mark.parametrize("batch", [1, 5])
def test_skip_mode_without_trace_gives_the_traced_logits(name, shortcut, upfront, soft, batch):
    """The lean skip path (latency: no trace, block gates only) computes what the traced paths do."""
    torch.manual_seed(0)
    net = build_backbone(name, 10, 3, shortcut=shortcut).eval()
    randomize_bn(net)
    net.policy = BlockGates(upfront, soft)
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        mask_logits, _ = net.run(x, "mask")
        skip_logits, _ = net.run(x, "skip")
        lean_logits = net(x, "skip")
    assert torch.allclose(mask_logits, skip_logits, atol=1e-4, rtol=1e-4)
    assert torch.allclose(lean_logits, skip_logits, atol=1e-4, rtol=1e-4)
    net.policy = None
    with torch.no_grad():
        assert torch.allclose(net(x, "skip"), net(x, "mask"), atol=1e-4, rtol=1e-4)


def test_skipped_block_counts_nothing_unless_parallel():
    net = build_backbone("resnet8", 10, 3).eval()

    class DropAll(GatePolicy):
        gates_blocks = True

        def block_gate(self, index, pooled):
            return torch.zeros(pooled.shape[0])

    net.policy = DropAll()
    with torch.no_grad():
        logits, trace = net.run(torch.randn(2, 3, 32, 32), "skip")
    assert trace.blocks_executed.tolist() == [0, 0]
    assert trace.active_out["blocks.0.conv1"].tolist() == [0, 0]
    net.policy.parallel = True  # LC-Net parallel mode: the first conv ran before the decision
    with torch.no_grad():
        _, trace = net.run(torch.randn(2, 3, 32, 32), "skip")
    assert trace.active_out["blocks.0.conv1"].tolist() == [8.0 * 2, 8.0 * 2]
    assert trace.active_out["blocks.0.conv2"].tolist() == [0, 0]


def test_skip_mode_refuses_training():
    net = build_backbone("resnet8", 10, 3)
    with pytest.raises(RuntimeError, match="inference"):
        net(torch.randn(1, 3, 32, 32), mode="skip")


def test_gated_forward_keeps_channels_last():
    net = build_backbone("resnet8", 10, 3).to(memory_format=torch.channels_last)
    net.policy = RandomGates(net)
    seen = []
    hook = lambda m, i, o: seen.append(o.is_contiguous(memory_format=torch.channels_last))  # noqa: E731
    for unit in net.unit_names():
        net.unit(unit).register_forward_hook(hook)
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    net(x).sum().backward()
    assert seen and all(seen)


def test_backbone_names_and_errors():
    assert build_backbone("resnet56", 10, 3).num_blocks == 27
    assert build_backbone("resnet110", 100, 3).num_blocks == 54
    assert build_backbone("preresnet164", 10, 3).num_blocks == 54
    with pytest.raises(ValueError, match="6n\\+2"):
        build_backbone("resnet21", 10, 3)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg16", 10, 3)


def test_a_unit_no_sample_keeps_runs_in_skip_mode():
    net = build_backbone("resnet8", 10, 3).eval()
    randomize_bn(net)

    class Off(GatePolicy):
        gated_units = frozenset({"blocks.0.conv1", "blocks.1.conv2"})

        def channel_gate(self, unit, pooled):
            return ChannelGate(torch.zeros(pooled.shape[0], net.unit(unit).out_channels))

    net.policy = Off()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        (a, ta), (b, _) = net.run(x, "mask"), net.run(x, "skip")
    assert torch.allclose(a, b, atol=1e-5)
    assert ta.active_out["blocks.0.conv1"].tolist() == [0, 0, 0] == ta.active_in["blocks.0.conv2"].tolist()


@pytest.mark.parametrize("shortcut", ["pad", "conv"])
def test_the_plain_reference_computes_the_networks_function(shortcut):
    """The latency reference (BN folded, adds and ReLUs in place) is the same function as the network."""
    from prunebench.plain import plain_reference

    torch.manual_seed(0)
    net = build_backbone("resnet20", 10, 1, shortcut=shortcut).eval()
    for m in net.modules():  # non-trivial BN statistics and affine
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2), m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(plain_reference(net)(x), net(x, mode="skip"), atol=1e-5)


def test_skip_mode_follows_weight_changes_made_in_eval_mode():
    """The cached folded weights follow in-place updates, loaded weights and dtype conversions."""
    net = build_backbone("resnet8", 10, 3).eval()
    randomize_bn(net)
    x = torch.randn(2, 3, 32, 32)
    check = lambda: torch.allclose(net(x, "skip"), net(x, "mask"), atol=1e-5)  # noqa: E731
    with torch.no_grad():
        assert check()
        net.unit("blocks.0.conv1").conv.weight.mul_(2)  # an optimizer-style in-place step
        assert check()
        other = build_backbone("resnet8", 10, 3).eval()
        randomize_bn(other)
        net.load_state_dict({k: v * 1.5 if v.is_floating_point() else v for k, v in other.state_dict().items()})
        assert check()
        net.double()  # new storage, no version bump
        x = x.double()
        assert net(x, "skip").dtype == torch.float64 and check()
    unit = ConvUnit(torch.nn.Conv2d(3, 4, 3), None, relu=False).eval()  # no norm buffers to be replaced
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        unit.forward_sliced(x, None, None, None)
        unit.to(memory_format=torch.channels_last)  # new storage for the conv weight, same version
        unit.conv.weight.data.mul_(0)  # through .data: no version bump either
        assert unit.forward_sliced(x, None, None, None).abs().max() == unit.conv.bias.abs().max()


def test_global_pool_is_the_mean_and_its_gradient_keeps_channels_last():
    from prunebench.gates import global_pool

    x = torch.randn(4, 16, 7, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(4, 16)
    (global_pool(x) * w).sum().backward()
    pooled_grad = x.grad
    assert pooled_grad.is_contiguous(memory_format=torch.channels_last) and not pooled_grad.is_contiguous()
    x.grad = None
    (x.mean((2, 3)) * w).sum().backward()
    assert torch.allclose(pooled_grad, x.grad) and torch.allclose(global_pool(x), x.mean((2, 3)), atol=1e-6)
