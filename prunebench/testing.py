"""Conformance checks any method (built-in or plugin) must pass, on synthetic data in seconds.

    from prunebench.testing import check_method
    check_method("my_method")            # raises AssertionError naming what is wrong
"""

from __future__ import annotations

import copy

import torch

from .api import Method, RunContext, UserError, get_method
from .claims import LEARNED_KEEPS
from .backbones import GatedResNet, build_backbone
from .data import Dataset, Normalizer, load_dataset
from .flops import Accountant
from .plain import plain_reference
from .train import TrainSpec, fit, set_seed


def tiny_setup(seed: int = 0, epochs: int = 1) -> tuple[GatedResNet, Dataset]:
    """A briefly pretrained ResNet-8 (width 8) on the synthetic dataset (1 epoch: ~30 % accuracy, 20: ~100 %)."""
    data = load_dataset("synthetic", val_size=32, n_train=256, n_test=64, num_classes=4, size=16)
    set_seed(seed)
    net = build_backbone("resnet8", data.num_classes, data.in_channels, width=8)
    fit(net, data, TrainSpec(epochs=epochs, batch_size=64, lr=0.05, compile="off"), RunContext(seed=seed))
    return net.eval(), data


def _budgets(method: Method, net: GatedResNet) -> list:
    low, high = method.budget_range(net)
    mid = (low + high) / 2
    if method.knob == "blocks":
        return sorted({int(low), int(round(mid)), int(high)})
    return sorted({low, mid, high}) if method.test_time_knob else [mid]


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _equal_states(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def check_method(method: Method | str, hp: dict | None = None) -> dict:
    """Train on synthetic data and check interface, trace, MACs, determinism and mask/skip agreement."""
    method = get_method(method) if isinstance(method, str) else method
    name = method.name
    backbone, data = tiny_setup()
    hp = method.resolve_hp({**getattr(method, "quick_hp", {}), **(hp or {})})
    before = _state(backbone)
    budgets = _budgets(method, backbone)
    train_budget = budgets[len(budgets) // 2]
    run = RunContext(seed=0)

    set_seed(0)
    net = method.train(backbone, data, train_budget, copy.deepcopy(hp), run)
    assert isinstance(net, GatedResNet), f"{name}.train must return a GatedResNet, got {type(net).__name__}"
    assert _equal_states(before, _state(backbone)), f"{name}.train mutated the backbone it was given"

    # Validation: a budget outside the range and an unknown hyperparameter are user errors.
    low, high = method.budget_range(backbone)
    for bad in (low - 1, high + 1):
        try:
            method.check_budget(backbone, bad)
        except UserError:
            pass
        else:
            raise AssertionError(f"{name}: budget {bad} outside [{low}, {high}] was accepted")
    try:
        method.resolve_hp({"no_such_key__": 1})
    except UserError:
        pass
    else:
        raise AssertionError(f"{name}: an unknown hyperparameter was accepted")

    accountant = Accountant(net, (data.in_channels, *data.image_size))
    eval_budgets = budgets if method.test_time_knob else [train_budget]
    results = {}
    for b in eval_budgets:
        res = method.evaluate(net, data, b, run, batch_size=32, accountant=accountant)
        rec = res.records
        assert len(rec) == len(data.test_y), f"{name}: {len(rec)} records for {len(data.test_y)} test samples"
        assert (rec["macs"] <= accountant.dense_macs * (1 + 1e-9) + rec["controller_macs"]).all(), \
            f"{name}: a sample's backbone MACs exceed the dense network's"
        assert (rec["backbone_macs"] >= 0).all() and (rec["controller_macs"] >= 0).all()
        if method.knob == "blocks":
            assert rec["blocks_executed"].max() <= b, f"{name}: a sample ran more than {b} blocks"
        results[b] = res.summary

    # Trace shapes and mask/skip agreement on one batch.
    method.configure(net, eval_budgets[-1])
    x = Normalizer(data.mean, data.std)(data.test_x[:16])
    with torch.no_grad():
        logits, trace = net.run(x, "mask")
        logits_skip, trace_skip = net.run(x, "skip")
        logits_timed = net(x, "skip")  # untraced, as latency runs it (the lean path where it applies)
    assert logits.shape == (16, data.num_classes), f"{name}: logits shape {tuple(logits.shape)}"
    assert trace.block_gates.shape == (16, net.num_blocks), f"{name}: block gates {tuple(trace.block_gates.shape)}"
    assert set(trace.active_in) == set(accountant.units), f"{name}: trace units differ from the backbone's"
    assert torch.allclose(logits, logits_skip, atol=1e-4, rtol=1e-4), \
        f"{name}: skip mode disagrees with mask mode by {(logits - logits_skip).abs().max():.2e}"
    assert torch.allclose(logits_skip, logits_timed, atol=1e-4, rtol=1e-4), \
        f"{name}: untraced skip mode disagrees with the traced one by {(logits_skip - logits_timed).abs().max():.2e}"
    for unit in trace.active_in:
        assert torch.equal(trace.active_in[unit], trace_skip.active_in[unit]) and \
            torch.equal(trace.active_out[unit], trace_skip.active_out[unit]), \
            f"{name}: the skip-mode trace differs at {unit}"

    # The plain latency reference (prunebench.plain) computes the trained network's function without its policy.
    policy, net.policy = net.policy, None
    try:
        with torch.no_grad():
            plain = plain_reference(net)(x.contiguous(memory_format=torch.channels_last))
            ref = net(x)
            # relative to the logits' scale: without its policy a network's logits may be large (LC-Net's scaled blocks)
            scale = float(ref.abs().max()) + 1.0
            assert torch.allclose(plain, ref, atol=1e-4 * scale, rtol=1e-4), \
                f"{name}: the plain reference differs by {(plain - ref).abs().max():.2e} (logits up to {scale:.2e})"
    finally:
        net.policy = policy

    # Determinism: same seed, same trained weights and same per-sample results.
    set_seed(0)
    again = method.train(backbone, data, train_budget, copy.deepcopy(hp), RunContext(seed=0))
    assert _equal_states(_state(net), _state(again)), f"{name}: the same seed gave different weights"
    res_again = method.evaluate(again, data, eval_budgets[-1], run, batch_size=32, accountant=accountant)
    assert res_again.summary == results[eval_budgets[-1]], f"{name}: the same seed gave different results"
    if method.no_pruning is not None and not method.derived_from:
        check_no_pruning(method, hp)
    return results


def check_no_pruning(method: Method | str, hp: dict | None = None) -> dict:
    """The method at its `no_pruning` budget costs what the dense network costs (mean MACs, its controller
    included, within 1 %: the claims table's sanity rule); where a policy must learn that (`no_pruning_learned`,
    RNP's p = 0), its backbone at least LEARNED_KEEPS of it, more than random actions keep: a learner that learns
    nothing fails. A learned policy runs on a backbone pretrained to ~100 %, on which keeping channels pays."""
    method = get_method(method) if isinstance(method, str) else method
    assert method.no_pruning is not None, f"{method.name} declares no no_pruning budget"
    backbone, data = tiny_setup(epochs=20 if method.no_pruning_learned else 1)
    hp = method.resolve_hp({**getattr(method, "quick_hp", {}), **(hp or {})})
    budget = backbone.num_blocks if method.no_pruning == "all blocks" else method.no_pruning
    run = RunContext(seed=0)
    set_seed(0)
    net = method.train(backbone, data, budget, hp, run)
    accountant = Accountant(net, (data.in_channels, *data.image_size))
    summary = method.evaluate(net, data, budget, run, batch_size=32, accountant=accountant).summary
    if method.no_pruning_learned:
        kept = summary["backbone_macs_mean"] / summary["dense_macs"]
        assert kept >= LEARNED_KEEPS, (f"{method.name} at {budget} (no pruning) keeps {kept:.4f} of the backbone's "
                                       f"MACs, under {LEARNED_KEEPS:g}: no more than random actions would keep")
    else:
        assert summary["macs_frac"] >= 0.99, \
            f"{method.name} at {budget} (no pruning) costs {summary['macs_frac']:.4f} of the dense network's MACs"
    return summary
