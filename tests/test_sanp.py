import math

import pytest
import torch

from prunebench.api import RunContext, UserError
from prunebench.data import Normalizer
from prunebench.methods.sanp import (SANP, SANPFixedK, SANPStatic, budget_lambda, cost_by_fraction, costing,
                                     fraction_for_cost, inference_code, ramped_budget, saturating_sigmoid,
                                     schedule_lambda0, semantic_hash, update_average)
from prunebench.flops import Accountant
from prunebench.train import TrainSpec, epoch_steps, lr_factor, make_optimizer


def _sanp(backbone, variant="sanp"):
    method = {"sanp": SANP, "static": SANPStatic, "fixed_k": SANPFixedK}[variant]()
    return method._gated(backbone, method.resolve_hp({}), RunContext()).eval()


def test_saturating_sigmoid_values():
    x = torch.tensor([-100.0, 0.0, math.log(3.0), 100.0])  # sigmoid: 0, 0.5, 0.75, 1
    assert torch.allclose(saturating_sigmoid(x, 1.2, 0.1), torch.tensor([0.0, 0.5, 0.8, 1.0]))


def test_evaluation_code_is_binary_and_noise_free():
    s = torch.tensor([[-1.0, -1e-3, 1e-3, 2.0]])
    code, mask = semantic_hash(s, training=False, a=1.2, b=0.1)
    assert torch.equal(inference_code(s, 1.2, 0.1), mask)
    assert torch.equal(code, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))  # s1 > 0.5 iff s > 0
    assert torch.equal(mask, code > 0)


def test_half_the_samples_use_the_binary_code_and_gradients_flow_through_s1():
    torch.manual_seed(0)
    s = torch.randn(8, 64, requires_grad=True)
    code, mask = semantic_hash(s, training=True, a=1.2, b=0.1)
    binary_rows = ((code == 0) | (code == 1)).all(1)
    assert int(binary_rows.sum()) == 4  # exactly half of the batch (continuous rows are not all 0/1)
    assert torch.equal(code[binary_rows] > 0, mask[binary_rows])
    code.sum().backward()
    # straight-through: the binary rows get s1's gradient, a*sigmoid'(s + noise) where s1 is not clamped
    assert (s.grad[binary_rows] != 0).any() and (s.grad >= 0).all()


def test_lambda_sign_and_clamp():
    assert budget_lambda(60.0, 50.0, 100.0, 0.01) == 0.01 * 0.1   # above budget: sparsify
    assert budget_lambda(40.0, 50.0, 100.0, 0.01) == -0.01 * 0.1  # below: densify
    assert budget_lambda(1e9, 50.0, 100.0, 0.01) == 0.01           # clamped to [-lambda0, lambda0]
    assert budget_lambda(-1e9, 50.0, 100.0, 0.01) == -0.01
    assert budget_lambda(50.0, 50.0, 100.0, 0.01) == 0.0


def test_cost_average_starts_at_the_first_batch_then_moves():
    avg = torch.tensor(float("nan"), dtype=torch.float64)
    update_average(avg, 10.0, 0.9)
    assert float(avg) == 10.0
    update_average(avg, 20.0, 0.9)
    assert math.isclose(float(avg), 11.0)


def test_inserted_modules_keep_the_pretrained_function(tiny):
    backbone, data = tiny
    x = Normalizer(data.mean, data.std)(data.test_x[:16])
    net = _sanp(backbone)
    with torch.no_grad():
        logits, trace = net.run(x)
        assert torch.allclose(logits, backbone(x), atol=1e-5)  # s = 1, every code on
    assert all((trace.gated_active[u] == net.unit(u).out_channels).all() for u in net.policy.gated_units)


def test_static_variant_prunes_every_sample_alike(tiny):
    backbone, data = tiny
    net = _sanp(backbone, "static")
    for spm in net.policy.spm.values():
        torch.nn.init.normal_(spm.fc2.weight)
        torch.nn.init.normal_(spm.static_input)
    with torch.no_grad():
        _, trace = net.run(Normalizer(data.mean, data.std)(data.test_x[:16]))
    counts = torch.stack(list(trace.gated_active.values()))
    assert (counts == counts[:, :1]).all() and (counts < counts.max()).any()


def test_fixed_k_fraction_lands_the_cost_on_the_budget(tiny):
    backbone, data = tiny
    net = _sanp(backbone, "fixed_k")
    fractions, costs = cost_by_fraction(net, data, *costing(net, data))
    assert costs == sorted(costs) and costs[-1] > 0.5
    fraction = fraction_for_cost(fractions, costs, 0.5)
    net.policy.keep_fraction = fraction
    with torch.no_grad():
        _, trace = net.run(Normalizer(data.mean, data.std)(data.train_x[:256]))
    accountant = Accountant(net, (data.in_channels, *data.image_size))
    frac = float(accountant.backbone_macs(trace).mean()) / accountant.dense_macs
    assert 0.4 < frac < 0.6
    for unit in net.policy.gated_units:  # the same fraction in every layer
        assert (trace.gated_active[unit] == max(1, math.ceil(fraction * net.unit(unit).out_channels - 1e-9))).all()


def test_fraction_for_cost_interpolates_and_clamps():
    fractions, costs = [0.0, 0.5, 1.0], [0.1, 0.3, 1.0]
    assert fraction_for_cost(fractions, costs, 0.2) == pytest.approx(0.25)
    assert fraction_for_cost(fractions, costs, 0.65) == pytest.approx(0.75)
    assert fraction_for_cost(fractions, costs, 0.05) == 1e-6 and fraction_for_cost(fractions, costs, 2.0) == 1.0


def test_the_ramped_budget_falls_from_dense_to_the_budget_then_stays():
    assert [ramped_budget(s, 100, 0.4, 0.5) for s in (0, 25, 50, 99)] == pytest.approx([1.0, 0.7, 0.4, 0.4])
    assert ramped_budget(0, 100, 0.4, 0.0) == 0.4  # the paper's: the budget from the first step


def test_training_moves_the_cost_towards_the_budget(tiny):
    backbone, data = tiny
    method = SANP()
    hp = method.resolve_hp({"lambda0": 20.0, "spm_lr_scale": 10.0, "cost_every": 1,
                            "warmup": {"epochs": 1, "batch_size": 64, "lr": 0.1},
                            "finetune": {"epochs": 10, "batch_size": 32, "lr": 0.01}})
    net = method.train(backbone, data, 0.3, hp, RunContext(seed=0))
    assert float(net.policy.cost_average) < 0.8 * Accountant(net, (3, 16, 16)).dense_macs


def test_relative_noise_codes_do_not_depend_on_the_saliencies_scale():
    # s's scale is free (BN's affine makes up for it): with the noise a fraction of mean |s|, shrinking every
    # saliency of a sample leaves its training codes as they were; with N(0, 1) they turn into coin flips
    s = torch.randn(64, 32) + 2.0
    codes = {}
    for scale in (1.0, 0.01):
        for noise in (0.33, None):
            torch.manual_seed(0)
            codes[scale, noise] = semantic_hash(scale * s, training=True, a=1.2, b=0.1, noise_scale=noise)[1]
    assert torch.equal(codes[1.0, 0.33], codes[0.01, 0.33])
    assert codes[0.01, None].float().mean() < 0.6 < codes[1.0, None].float().mean()


def test_lambda0_in_units_of_the_schedule_carries_a_saliency_to_zero_within_its_share(tiny, caplog):
    """The L1 alone at lambda0 moves an SPM's output bias by lambda0 / N a step: the fine-tuning's own optimizer
    (momentum SGD on its schedule) takes a bias from the mean saliency to ~0 in the share of the steps."""
    spec = TrainSpec.from_dict({"epochs": 1, "lr": 0.01, "schedule": "cosine"})
    lambda0 = schedule_lambda0(3.0, 688, spec, 10.0, 400, 0.25)
    bias = torch.nn.Parameter(torch.tensor(3.0))
    optimizer = make_optimizer([{"params": [bias], "lr": spec.lr * 10.0}], spec)
    for t in range(100):
        optimizer.param_groups[0]["lr"] = spec.lr * 10.0 * lr_factor(spec, t, 400)
        optimizer.zero_grad()
        (lambda0 / 688 * bias).backward()
        optimizer.step()
    assert abs(float(bias.detach())) < 0.15 * 3.0  # momentum's first steps are shorter: a little short of 0

    backbone, data = tiny
    method = SANP()
    hp = method.resolve_hp({"lambda_schedule_share": 0.5, "warmup": {"epochs": 1, "batch_size": 64},
                            "finetune": {"epochs": 1, "batch_size": 64}})
    with caplog.at_level("INFO"):
        method.train(backbone, data, 0.5, hp, RunContext(seed=0))
    words = next(r.getMessage() for r in caplog.records if "lambda0 =" in r.getMessage()).split()
    logged, l1 = float(words[3]), float(words[8].strip("(),"))  # "sanp: lambda0 = L (cross-entropy C, mean |s| S)"
    net = method._gated(backbone, hp, RunContext())
    filters = sum(net.unit(u).out_channels for u in net.policy.gated_units)
    steps = epoch_steps(TrainSpec.from_dict(hp["finetune"]), len(data.train_x))
    expected = schedule_lambda0(l1, filters, TrainSpec.from_dict(hp["finetune"]), hp["spm_lr_scale"], steps, 0.5)
    assert math.isclose(logged, expected, rel_tol=1e-3) and math.isclose(l1, 3.0, rel_tol=0.2)
    for bad in ({"lambda_schedule_share": 0}, {"lambda_schedule_share": 0.25, "finetune": {"optimizer": "adam"}}):
        with pytest.raises(UserError, match="lambda_schedule_share"):
            method.resolve_hp(bad)


def test_training_curves_one_value_per_step_kept_by_a_resumed_job_and_in_the_evaluation(tiny, tmp_path):
    from prunebench.evaluate import evaluate

    backbone, data = tiny
    method = SANP()
    hp = method.resolve_hp({"warmup": {"epochs": 1, "batch_size": 64}, "finetune": {"epochs": 2, "batch_size": 64}})
    net = method.train(backbone, data, 0.5, hp, RunContext(seed=0, out_dir=tmp_path))
    curves = net.training_curves
    steps = 2 * (len(data.train_x) // 64)
    assert list(curves) == ["cross-entropy", "lambda x L1 / N", "mean |s|", "cost (of dense)", "budget steered to"]
    assert all(len(values) == steps for values in curves.values()) and curves["cross-entropy"][0] > 0
    # a re-run finds the finished checkpoint: no step runs again, and the curves come back with it
    again = method.train(backbone, data, 0.5, hp, RunContext(seed=0, out_dir=tmp_path)).training_curves
    assert again == curves
    assert evaluate(net, data, RunContext()).summary["training_curves"] == curves


def test_fixed_k_budget_term_never_rewards_growing_saliencies(tiny):
    backbone, data = tiny
    method = SANPFixedK()
    hp = method.resolve_hp({"lambda_schedule_share": 0.25, "warmup": {"epochs": 1, "batch_size": 64},
                            "finetune": {"epochs": 2, "batch_size": 32}})
    curves = method.train(backbone, data, 0.5, hp, RunContext(seed=0)).training_curves
    assert min(curves["lambda x L1 / N"]) >= 0 and all(math.isfinite(v) for v in curves["cross-entropy"])
