"""Adaptive slimming: the global threshold, bridges, zero-channel layers, the input-side gate point and the export."""

import copy

import pytest
import torch
from torch import nn

from prunebench.api import RunContext, UserError
from prunebench.backbones import build_backbone
from prunebench.flops import Accountant
from prunebench.gates import ConvUnit, StaticChannelPolicy
from prunebench.methods.slimming import Pruner, Slimming, compose_bridge, prunable_norms
from prunebench.testing import tiny_setup

from test_flops import fvcore_conv_linear


def _random_gammas(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    for norm in prunable_norms(net).values():
        norm.weight.data = torch.rand(norm.num_features, generator=g) + 0.01
        norm.running_mean.data = torch.randn(norm.num_features, generator=g) * 0.1
        norm.running_var.data = torch.rand(norm.num_features, generator=g) + 0.5
    return net.eval()


def test_prunable_gate_points_cover_inner_units_and_the_pre_activation():
    assert list(prunable_norms(build_backbone("resnet8", 10, 3))) == [f"blocks.{i}.conv1" for i in range(3)]
    assert list(prunable_norms(build_backbone("preresnet11", 10, 3)))[:3] == [
        "blocks.0.pre_norm", "blocks.0.conv1", "blocks.0.conv2"]


def test_one_global_threshold_selects_the_smallest_gammas_of_all_layers():
    net = _random_gammas(build_backbone("resnet8", 10, 3))
    pruner = Pruner(net, (3, 16, 16), "compose")
    gammas = torch.cat([m.weight.detach().abs() for m in prunable_norms(net).values()])
    threshold = gammas.sort().values[len(gammas) // 3]
    masks = pruner._masks_at(float(threshold))
    assert torch.equal(torch.cat(list(masks.values())), gammas > threshold)
    # prune_to picks the smallest threshold whose cost meets the target
    pruner.prune_to(0.6)
    assert pruner.cost() <= 0.6
    kept = torch.cat([m.weight.detach().abs()[pruner.masks[k]] for k, m in prunable_norms(net).items()])
    cut = torch.cat([m.weight.detach().abs()[~pruner.masks[k]] for k, m in prunable_norms(net).items()])
    assert cut.max() < kept.min()
    fresh = Pruner(net, (3, 16, 16), "compose")  # keeping the largest pruned gamma would miss the target
    assert fresh.cost(fresh._masks_at(float(cut.sort().values[-2]))) > 0.6


def test_masks_only_grow_more_sparse():
    net = _random_gammas(build_backbone("resnet8", 10, 3))
    pruner = Pruner(net, (3, 16, 16), "compose")
    pruner.prune_to(0.7)
    before = {k: m.clone() for k, m in pruner.masks.items()}
    for norm in prunable_norms(net).values():  # a pruned channel's gamma grows back: it stays pruned
        norm.weight.data = torch.ones_like(norm.weight)
    pruner.prune_to(0.7)
    assert all(torch.equal(pruner.masks[k] & ~before[k], torch.zeros_like(before[k])) for k in before)


@pytest.mark.parametrize("name", ["resnet8", "preresnet11"])
def test_zero_channel_layers_and_a_whole_stage_run_in_both_modes(name):
    net = _random_gammas(build_backbone(name, 10, 3, shortcut="conv"))
    pruner = Pruner(net, (3, 16, 16), "compose")
    pruner.masks = {k: torch.zeros_like(m) if k.startswith("blocks.1.") or k.startswith("blocks.0.conv") else m
                    for k, m in pruner.masks.items()}
    pruner._apply(pruner.masks)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        mask_logits, trace = net.run(x)
        skip_logits, _ = net.run(x, "skip")
    assert torch.allclose(mask_logits, skip_logits, atol=1e-4)
    assert float(trace.active_out["blocks.1.conv1"][0]) == 0
    # removing every block of the middle stage (zero bridges) leaves a working, exportable network
    zero = Pruner(_random_gammas(build_backbone(name, 10, 3, shortcut="conv")), (3, 16, 16), "zero")
    zero.masks = {k: torch.zeros_like(m) if k.startswith("blocks.1.") else m for k, m in zero.masks.items()}
    assert zero._bridge_thin_layers()
    small = zero.export()
    assert small.blocks[1].removed and small(x).shape == (4, 10)
    assert Accountant(small, (3, 16, 16)).dense_macs == Accountant(build_backbone(name, 10, 3, shortcut="conv"),
                                                                   (3, 16, 16)).dense_macs


def test_composed_bridge_is_exact_for_1x1_kernels_when_the_relu_passes_everything():
    torch.manual_seed(0)
    a = ConvUnit(nn.Conv2d(6, 5, 1, stride=2, bias=False), nn.BatchNorm2d(5), relu=True)
    b = ConvUnit(nn.Conv2d(5, 7, 1, bias=False), nn.BatchNorm2d(7), relu=True)
    for unit in (a, b):
        unit.norm.running_mean.uniform_(-0.5, 0.5)
        unit.norm.running_var.uniform_(0.5, 2)
        unit.norm.weight.data.uniform_(0.5, 1.5)
    a.norm.bias.data.fill_(100.0)  # the ReLU between them passes everything
    a.eval(), b.eval()
    keep = torch.tensor([True, False, True, False, False])
    x = torch.randn(3, 6, 8, 8)
    with torch.no_grad():
        mask = keep.float()[None].expand(3, -1)
        from prunebench.gates import ChannelGate
        reference = b(a(x, ChannelGate(mask)))
        bridge = compose_bridge(a, b, keep).eval()
        assert bridge.conv.kernel_size == (1, 1) and bridge.conv.stride == (2, 2) and bridge.conv.bias is not None
        assert torch.allclose(bridge(x), reference, atol=1e-3)
        # no channel kept: the composition is the zero conv (conv_b of nothing)
        empty = compose_bridge(a, b, torch.zeros(5, dtype=torch.bool))
        assert empty.conv.weight.abs().sum() == 0 and empty.conv.bias.abs().sum() == 0


@pytest.mark.parametrize("init", ["compose", "zero"])
def test_a_single_channel_layer_is_bridged(init):
    net = _random_gammas(build_backbone("preresnet11", 10, 3))
    pruner = Pruner(net, (3, 16, 16), init)
    key = "blocks.1.conv2"
    pruner.masks[key] = torch.zeros_like(pruner.masks[key])
    pruner.masks[key][0] = True
    assert pruner._bridge_thin_layers() and net.pruned
    block = net.blocks[1]
    if init == "zero":
        assert block.removed and not any(k.startswith("blocks.1.") for k in pruner.masks)
    else:
        assert block.unit_names == ["conv1", "conv2_conv3"]
        assert block.conv2_conv3.conv.kernel_size == (1, 1) and block.conv2_conv3.conv.stride == (2, 2)
    with torch.no_grad():
        assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("name,init", [("resnet8", "compose"), ("preresnet11", "compose"), ("preresnet11", "zero")])
def test_export_computes_the_masked_function_at_fvcores_cost(name, init):
    net = _random_gammas(build_backbone(name, 10, 3, shortcut="conv"))
    pruner = Pruner(net, (3, 16, 16), init)
    pruner.prune_to(0.45)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        masked = net.eval()(x)
        masked_cost = pruner.cost()
        small = pruner.export()
        assert small.policy is None and small.pruned
        assert torch.allclose(small(x), masked, atol=1e-4)
        assert torch.allclose(small(x, "skip"), masked, atol=1e-4)
        acc = Accountant(small, (3, 16, 16))
        _, trace = small.run(x[:1])
    assert float(acc.backbone_macs(trace)[0]) == fvcore_conv_linear(small, (3, 16, 16))
    assert float(acc.backbone_macs(trace)[0]) / acc.dense_macs == pytest.approx(masked_cost)
    if name.startswith("preresnet"):  # the input-side selection made conv1s narrower
        assert any(b.select is not None for b in small.blocks if not b.removed)


def test_input_side_gate_point_in_mask_and_skip_mode():
    net = _random_gammas(build_backbone("preresnet11", 10, 3))
    mask = torch.zeros(net.blocks[1].pre_norm.num_features)
    mask[[0, 3, 7, 8, 20]] = 1
    net.policy = StaticChannelPolicy({"blocks.1.pre_norm": mask})
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        logits, trace = net.run(x)
        skip, trace_skip = net.run(x, "skip")
    assert torch.allclose(logits, skip, atol=1e-4)
    assert trace.active_in["blocks.1.conv1"].tolist() == [5.0] * 3 == trace_skip.active_in["blocks.1.conv1"].tolist()
    assert trace.gated_active["blocks.1.pre_norm"].tolist() == [5.0] * 3
    acc = Accountant(net, (3, 16, 16))
    assert float(acc.backbone_macs(trace)[0]) < acc.dense_macs


def test_budget_below_the_floor_is_one_error_before_training():
    backbone, data = tiny_setup()
    method = Slimming()
    low, _ = method.budget_range(backbone)
    assert 0 < low < 0.2
    with pytest.raises(UserError, match="out of range"):
        method.check_budget(backbone, low / 2)
    # every channel pruned: a layer with none left removes its block in both inits, so both reach that floor
    floors = {init: Pruner(copy.deepcopy(backbone), (data.in_channels, *data.image_size), init).floor()
              for init in ("compose", "zero")}
    assert floors["compose"] == pytest.approx(floors["zero"]) and floors["zero"] == pytest.approx(low, rel=1e-3)
    with pytest.raises(UserError, match="bridge_init"):
        method.resolve_hp({"bridge_init": "random"})


def test_a_layer_with_no_channel_left_removes_its_block_when_composing():
    """Composing over no channel would be a zero 1x1 conv costing C_in x C_out MACs for a constant: the block goes."""
    net = _random_gammas(build_backbone("resnet8", 10, 3, shortcut="conv"))
    pruner = Pruner(net, (3, 16, 16), "compose")
    key = "blocks.1.conv1"
    pruner.masks[key] = torch.zeros_like(pruner.masks[key])
    assert pruner._bridge_thin_layers()
    assert net.blocks[1].removed and not any(k.startswith("blocks.1.") for k in pruner.masks)
    with torch.no_grad():
        assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_l1_ce_ratio_sets_the_sparsity_term_relative_to_the_backbones_loss():
    """With l1_ce_ratio the sparsity term starts at that multiple of the backbone's cross-entropy; without, l1."""
    from prunebench.train import backbone_cross_entropy
    backbone, data = tiny_setup()
    method = Slimming()
    gammas = sum(m.weight.abs().sum().item() for m in prunable_norms(backbone).values())
    ce = backbone_cross_entropy(backbone, data, seed=0)
    lam = method._l1(backbone, data, method.resolve_hp({"l1_ce_ratio": 3}), RunContext())
    assert lam * gammas == pytest.approx(3 * ce)
    assert method._l1(backbone, data, method.resolve_hp({"l1": 2e-4}), RunContext()) == 2e-4
    with pytest.raises(UserError, match="l1_ce_ratio"):
        method.resolve_hp({"l1_ce_ratio": -1})
