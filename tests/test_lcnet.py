import pytest
import torch

from prunebench.api import UserError, copy_backbone, get_method
from prunebench.config import validate
from prunebench.data import Normalizer
from prunebench.flops import Accountant
from prunebench.methods.lcnet import LCNetPolicy, relu1


def test_relu1_values_and_gradients():
    x = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    hard = relu1(x)
    assert torch.equal(hard, torch.tensor([0.0, 0.5, 1.0]))
    hard.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 0.0]))
    x.grad = None
    leaky = relu1(x, slope=0.1)
    assert torch.allclose(leaky, torch.tensor([-0.1, 0.5, 1.1]))
    leaky.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([0.1, 1.0, 0.1]))  # a closed or saturated gate still learns


def _hand_built(backbone, parallel):
    """Block 0 skipped (S_L = 0); block 1 runs with half of its first conv's channels (S_C = 0 on the rest)."""
    net = copy_backbone(backbone)
    policy = LCNetPolicy(net, slope=0.05, gate_bias=1.0)
    with torch.no_grad():
        policy.l_net[0].bias.fill_(0.0)
        c = policy.c_net[1].bias
        c[c.numel() // 2:] = 0.0
    policy.parallel = parallel
    net.policy = policy
    return net.eval()


def test_parallel_and_sequential_macs_on_a_hand_built_trace(tiny):
    backbone, data = tiny
    x = Normalizer(data.mean, data.std)(data.test_x[:4])
    accountant = Accountant(backbone, (data.in_channels, *data.image_size))
    cost = {name: unit.dense_macs for name, unit in accountant.units.items()}
    skipped_conv1, half = cost["blocks.0.conv1"], 0.5
    expected = {
        # gates first: the skipped block costs nothing; block 1's first conv computes half its channels
        False: accountant.dense_macs - skipped_conv1 - cost["blocks.0.conv2"]
        - (1 - half) * (cost["blocks.1.conv1"] + cost["blocks.1.conv2"]),
        # gates beside the first conv: every first conv runs in full; only the second conv saves
        True: accountant.dense_macs - cost["blocks.0.conv2"] - (1 - half) * cost["blocks.1.conv2"],
    }
    for parallel, macs in expected.items():
        net = _hand_built(backbone, parallel)
        with torch.no_grad():
            for mode in ("mask", "skip"):
                _, trace = net.run(x, mode)
                assert torch.allclose(accountant.backbone_macs(trace), torch.tensor(macs, dtype=torch.float64)), \
                    (parallel, mode)
    assert expected[False] < expected[True]


def test_a_closed_block_is_not_run_in_skip_mode(tiny):
    backbone, data = tiny
    x = Normalizer(data.mean, data.std)(data.test_x[:4])
    net = _hand_built(backbone, parallel=False)
    with torch.no_grad():
        reference, _ = net.run(x, "mask")
        for name in ("conv1", "conv2"):  # a skipped branch must not touch its weights
            getattr(net.blocks[0], name).conv.weight.fill_(float("nan"))
        logits, trace = net.run(x, "skip")
    assert torch.allclose(logits, reference, atol=1e-5)
    assert (trace.active_out["blocks.0.conv1"] == 0).all() and (trace.block_gates[:, 0] == 0).all()


def test_derived_mode_needs_its_parent_in_the_config():
    with pytest.raises(UserError, match="list lcnet under methods"):
        validate({"methods": {"lcnet_seq": {"train_budgets": [0.1]}}})
    with pytest.raises(UserError, match="takes its hyperparameters from methods.lcnet.hp"):
        validate({"methods": {"lcnet": {"train_budgets": [0.1]}, "lcnet_seq": {"train_budgets": [0.1], "hp": {"slope": 0.2}}}})
    with pytest.raises(UserError, match=r"\[0.2\] not in methods.lcnet.train_budgets"):
        validate({"methods": {"lcnet": {"train_budgets": [0.1]}, "lcnet_seq": {"train_budgets": [0.2]}}})
    cfg = validate({"methods": {"lcnet": {"train_budgets": [0.1], "hp": {"slope": 0.1}},
                                "lcnet_seq": {"train_budgets": [0.1]}}})
    assert cfg["methods"]["lcnet_seq"]["hp"]["slope"] == 0.1
    assert validate(cfg) == cfg  # a resolved config (what the workflow hands the CLI) validates as is


def test_derive_switches_the_trained_model_to_sequential(tiny):
    backbone, data = tiny
    net = _hand_built(backbone, parallel=True)
    seq = get_method("lcnet_seq").derive(net, data, {}, None)
    assert seq.policy.parallel is False


def test_sequential_saves_more_than_parallel_at_equal_accuracy(tiny):
    """The modes' comparison is an identity of the accountant on one model (so a test, not a claim): the same
    predictions, and never more MACs in sequential mode, fewer where a gate closes."""
    from prunebench.evaluate import evaluate
    from prunebench.run import RunContext

    backbone, data = tiny
    results = {}
    for parallel in (True, False):
        run = RunContext(seed=0, device="cpu", out_dir=None)
        results[parallel] = evaluate(_hand_built(backbone, parallel), data, run).records
    assert (results[True]["prediction"] == results[False]["prediction"]).all()
    assert (results[False]["macs"] <= results[True]["macs"]).all()
    assert results[False]["macs"].mean() < results[True]["macs"].mean()


def test_the_knob_sets_the_open_gates_l1_relative_to_the_backbones_loss_on_any_dataset():
    """The same knob value gives the same L1-to-loss ratio on data whose loss is 1x and many x the backbone's."""
    import dataclasses
    import torch.nn.functional as F

    from prunebench.api import RunContext
    from prunebench.methods.lcnet import l1_coefficient
    from prunebench.testing import tiny_setup
    backbone, data = tiny_setup(epochs=20)  # learned: the shuffled labels' loss is many times its own
    shuffled = dataclasses.replace(data, train_y=data.train_y[torch.randperm(len(data.train_y),
                                                                        generator=torch.Generator().manual_seed(0))])
    ratios, hp = [], get_method("lcnet").resolve_hp({})  # l1_unit: cross_entropy
    for d in (data, shuffled):
        net = copy_backbone(backbone)
        net.policy = LCNetPolicy(net, slope=0.01, gate_bias=1.0)
        coefficient = l1_coefficient(net, d, 20.0, hp, RunContext())
        x, y = d.train_x[:512], d.train_y[:512]
        net.train()
        logits = net(Normalizer(d.mean, d.std)(x))
        ce = F.cross_entropy(logits, y).item()
        ratios.append((coefficient * net.policy.l1().item() / ce, ce))
    (ratio, ce), (ratio_shuffled, ce_shuffled) = ratios
    assert ce_shuffled > 3 * ce
    assert ratio == pytest.approx(20, rel=0.3) and ratio_shuffled == pytest.approx(20, rel=0.3)
    assert l1_coefficient(net, data, 0.0, hp, RunContext()) == 0.0


@pytest.mark.parametrize("value", [1.0, 0.5])
def test_the_knob_in_units_of_the_schedule_closes_an_open_gate_that_many_times_over_the_fine_tuning(tiny, value):
    """With l1_unit 'schedule', momentum SGD on the fine-tuning's schedule under the L1's gradient alone takes an
    open gate's bias from gate_bias to (1 - value) x gate_bias by the last step."""
    from prunebench.api import RunContext
    from prunebench.methods.lcnet import l1_coefficient
    from prunebench.train import TrainSpec, epoch_steps, lr_factor, make_optimizer, schedule_travel

    backbone, data = tiny
    method = get_method("lcnet")
    hp = method.resolve_hp({"l1_unit": "schedule", "finetune": {"epochs": 2, "batch_size": 32}})
    net = copy_backbone(backbone)
    net.policy = LCNetPolicy(net, slope=0.01, gate_bias=hp["gate_bias"])
    coefficient = l1_coefficient(net, data, value, hp, RunContext())
    spec = TrainSpec.from_dict(hp["finetune"])
    total = spec.epochs * epoch_steps(spec, len(data.train_x))  # the fine-tuning's steps on this data
    assert coefficient == pytest.approx(value * hp["gate_bias"] / schedule_travel(spec, total))
    net.train()
    net(Normalizer(data.mean, data.std)(data.train_x[:32]))  # a forward fills the policy's L1 terms
    (coefficient * net.policy.l1()).backward()
    for fc in (*net.policy.l_net, *net.policy.c_net):  # the L1's pull on an open gate's bias: the coefficient
        assert torch.allclose(fc.bias.grad, torch.full_like(fc.bias, coefficient))
    total = 400  # the unit against the optimizer itself, on a schedule long enough for momentum to build up
    bias = torch.nn.Parameter(torch.tensor(hp["gate_bias"]))
    optimizer = make_optimizer([{"params": [bias], "weight_decay": 0.0}], spec)
    for t in range(total):
        optimizer.param_groups[0]["lr"] = spec.lr * lr_factor(spec, t, total)
        optimizer.zero_grad()
        # d(L1)/d(bias) of an open gate is 1 per step (a batch mean)
        (value * hp["gate_bias"] / schedule_travel(spec, total) * bias).backward()
        optimizer.step()
    assert float(bias.detach()) == pytest.approx(hp["gate_bias"] * (1 - value), abs=0.05)
    for bad, message in (({"l1_unit": "loss"}, "l1_unit must be"),
                         ({"l1_unit": "schedule", "finetune": {"optimizer": "adam"}}, "momentum SGD")):
        with pytest.raises(UserError, match=message):
            method.resolve_hp(bad)
