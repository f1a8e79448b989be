import logging

import torch

from prunebench.api import RunContext, copy_backbone
from prunebench.data import Normalizer
from prunebench.flops import Accountant
from prunebench.methods.fbs import FBS, FBSPolicy, density_steps, gated_units, remove_norm_affine, winners


def _fbs(backbone, density):
    net = copy_backbone(backbone)
    units = gated_units(net, gate_stem=True)
    for unit in units:
        remove_norm_affine(net, unit)
    net.policy = FBSPolicy(net, units, density, beta_init=0.1)
    return net.eval(), units


def test_exactly_k_winners_per_sample(tiny):
    backbone, data = tiny
    x = Normalizer(data.mean, data.std)(data.test_x[:16])
    for density in (0.1, 0.3, 0.5, 0.75, 1.0):
        net, units = _fbs(backbone, density)
        with torch.no_grad():
            _, trace = net.run(x)
        for unit in units:
            k = winners(density, net.unit(unit).out_channels)
            assert (trace.gated_active[unit] == k).all(), (unit, density)


def test_a_winner_with_zero_saliency_is_not_active(tiny):
    net, _ = _fbs(tiny[0], 1.0)
    unit = "blocks.1.conv1"
    fc = net.policy.saliency[unit.replace(".", "_")]
    with torch.no_grad():
        fc.bias[:3] = -5.0  # g = relu(-5 + small) = 0 on the first three channels, all winners at d = 1
    net.policy.begin(torch.zeros(1))
    gate = net.policy.channel_gate(unit, 0.01 * torch.randn(4, fc.in_features))
    assert not gate.active[:, :3].any() and gate.active[:, 3:].all()
    assert (gate.shift[:, :3] == 0).all()  # no beta on an inactive channel: it computes nothing


def test_gate_initialisation_and_no_double_scaling(tiny):
    net, units = _fbs(tiny[0], 0.5)
    assert units[0] == "stem" and "blocks.0.conv2" in units
    for unit in units:
        fc = net.policy.saliency[unit.replace(".", "_")]
        assert torch.equal(fc.bias, torch.ones_like(fc.bias))  # all channels start boosted equally
        assert fc.weight.abs().max() <= 0.1 and 0.02 < fc.weight.std() < 0.06  # truncated normal, std 0.05
        assert torch.allclose(net.policy.beta[unit.replace(".", "_")], torch.tensor(0.1))
        norm = net.unit(unit).norm
        assert norm.weight is None and norm.bias is None  # the gate is BN's scale: no gamma besides
        assert torch.equal(norm.running_var, tiny[0].unit(unit).norm.running_var)


def test_gradient_reaches_the_winners_only(tiny):
    net, _ = _fbs(tiny[0], 0.5)
    unit = "blocks.1.conv1"
    fc = net.policy.saliency[unit.replace(".", "_")]
    torch.nn.init.zeros_(fc.weight)  # g = relu(1 + tiny): positive everywhere
    fc.weight.data += 1e-3 * torch.randn_like(fc.weight)
    net.policy.begin(torch.zeros(1))
    gate = net.policy.channel_gate(unit, torch.randn(6, fc.in_features))
    gate.scale.sum().backward()
    assert torch.equal(fc.bias.grad, gate.mask.float().sum(0))  # d(sum of winners' g)/d(bias) per channel


def test_inner_convs_cost_a_quarter_at_half_density(tiny):
    backbone, data = tiny
    net, _ = _fbs(backbone, 0.5)
    accountant = Accountant(net, (data.in_channels, *data.image_size))
    with torch.no_grad():
        _, trace = net.run(Normalizer(data.mean, data.std)(data.test_x[:8]))
    for block in range(net.num_blocks):
        unit = f"blocks.{block}.conv2"
        cost = accountant.units[unit]
        used = cost.dense_macs * trace.active_in[unit] * trace.active_out[unit] / (cost.in_channels * cost.out_channels)
        assert torch.allclose(used / cost.dense_macs, torch.tensor(0.25))  # input and output halved


def test_density_steps_down_from_one():
    assert density_steps(0.5, [0.75, 0.5, 0.25]) == [0.75, 0.5]  # after the d = 1 stage
    assert density_steps(0.6, [0.75, 0.5]) == [0.75, 0.6]
    assert density_steps(1.0, [0.75, 0.5]) == [1.0]  # the sanity point: a fine-tuning at d = 1
    assert density_steps(0.25, [0.75, 0.5, 0.3], start=0.5) == [0.3, 0.25]  # a chain's link from d = 0.5


def test_a_bf16_step_decides_its_gates_in_fp32(tiny):
    """Evaluation runs in fp32: under a training step's bf16 autocast the policy still sees fp32 inputs
    and decides outside autocast, so the winners it trains with are those it is evaluated with."""
    from prunebench.train import step_autocast

    backbone, data = tiny
    net, units = _fbs(backbone, 0.5)
    decide, seen = net.policy.channel_gate, []

    def spy(unit, pooled):
        gate = decide(unit, pooled)
        seen.append((pooled.dtype, torch.is_autocast_enabled("cpu"), gate.scale.dtype))
        return gate

    net.policy.channel_gate = spy
    with step_autocast(torch.bfloat16, torch.device("cpu")):
        net.train()(Normalizer(data.mean, data.std)(data.train_x[:8]))
    assert len(seen) == len(units) and set(seen) == {(torch.float32, False, torch.float32)}


def test_pretrained_gate_init_starts_at_the_pretrained_function(tiny):
    """gate_init 'pretrained': at d = 1 the gated network computes what the pretrained one does, negative gammas
    included; 'official' (bias 1, beta 0.1) does not."""
    backbone, data = tiny
    backbone = copy_backbone(backbone)
    with torch.no_grad():  # negative gammas too, in a unit with a ReLU (conv1) and one without (conv2)
        for unit in ("stem", "blocks.0.conv1", "blocks.0.conv2"):
            backbone.unit(unit).norm.weight[::2] *= -1
    method = FBS()
    x = Normalizer(data.mean, data.std)(data.test_x[:64])
    with torch.no_grad():
        dense = backbone.eval()(x)
        outputs = {init: method._gated(backbone, method.resolve_hp({"gate_init": init}), RunContext()).eval()(x)
                   for init in ("pretrained", "official")}
    assert torch.allclose(outputs["pretrained"], dense, atol=1e-4)
    assert not torch.allclose(outputs["official"], dense, atol=1e-2)


def test_the_d1_point_fine_tunes_after_its_full_density_stage(tiny, tmp_path, caplog):
    """At d = 1 with the artifact made in the same job, the target's fine-tuning still trains (it once resumed
    the full-density stage's checkpoint, of the same name, and trained nothing)."""
    backbone, data = tiny
    method = FBS()
    with caplog.at_level(logging.INFO):
        method.train(backbone, data, 1.0, method.resolve_hp(method.quick_hp), RunContext(seed=0, out_dir=tmp_path))
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("fbs-full-density epoch 1/1") for m in messages)
    assert any(m.startswith("fbs-d1 epoch 1/1") for m in messages)
    assert not any("resuming" in m for m in messages)
