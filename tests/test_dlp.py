import copy

import pytest
import torch

from prunebench.api import RunContext, get_method
from prunebench.data import Normalizer
from prunebench.gates import UpfrontBlockGates
from prunebench.methods.dlp import (greedy_ranks, ranking_hinge_loss, removal_budget_weights,
                                    top_blocks)


def _brute_force_order(net, x, y):
    """The greedy expert by definition, one image and one masked forward per candidate: each step removes
    the block whose removal keeps the true-class logit highest (the lowest index on ties)."""
    k = net.num_blocks
    keep, ranks = [1.0] * k, [None] * k
    for step in range(k):
        best = None
        for j in (j for j in range(k) if keep[j]):
            net.policy.keep = torch.tensor([keep])
            net.policy.keep[0, j] = 0
            logit = net(x)[0, y].item()
            if best is None or logit > best[0]:
                best = (logit, j)
        keep[best[1]], ranks[best[1]] = 0.0, step
    return ranks


@pytest.mark.parametrize("stages", [3, 4])  # K = 3 and 4 blocks
def test_greedy_removal_order_matches_brute_force(tiny, stages):
    from prunebench.backbones import GatedResNet

    _, data = tiny
    torch.manual_seed(0)
    net = GatedResNet(2 * stages + 2, data.num_classes, data.in_channels, width=4, stages=stages).eval()
    for m in net.modules():  # random BN statistics and affine: the logits depend on every block
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2), m.weight.data.uniform_(0.5, 1.5)
    normalize = Normalizer(data.mean, data.std)
    x, y = data.test_x[:6], data.test_y[:6]
    ranks = greedy_ranks(net, x, y, normalize, batch_size=4)
    net.policy = UpfrontBlockGates()  # block masks given per sample
    with torch.no_grad():
        for i in range(len(y)):
            assert ranks[i].tolist() == _brute_force_order(net, normalize(x[i:i + 1]), y[i])


def _trained_dlp(backbone, data, **hp):
    method = get_method("dlp")
    return method.train(backbone, data, backbone.num_blocks, method.resolve_hp({**method.quick_hp, **hp}),
                        RunContext(seed=0))


def test_finetuning_leaves_the_policy_unchanged_and_imitation_lowers_the_ranking_loss(tiny, monkeypatch):
    from prunebench.methods import dlp

    backbone, data = tiny
    normalize = Normalizer(data.mean, data.std)
    seen = {}
    imitate, finetune = dlp.DLP._imitate, dlp.DLP._finetune

    def ranking_loss(policy_net, expert):
        with torch.no_grad():
            scores = policy_net.eval()(normalize(data.train_x[expert["indices"]]))
        return ranking_hinge_loss(scores, expert["ranks"].long()).item()

    def spy_imitate(self, policy_net, data_, expert, hp, run, round_):
        seen["loss_before"] = ranking_loss(policy_net, expert)
        imitate(self, policy_net, data_, expert, hp, run, round_)
        seen["loss_after"] = ranking_loss(policy_net, expert)

    def spy_finetune(self, net, data_, hp, run, round_):  # the policy right before and after fine-tuning
        seen["before"] = {k: v.clone() for k, v in net.policy.net.state_dict().items()}
        finetune(self, net, data_, hp, run, round_)
        seen["after"] = {k: v.clone() for k, v in net.policy.net.state_dict().items()}

    monkeypatch.setattr(dlp.DLP, "_imitate", spy_imitate)
    monkeypatch.setattr(dlp.DLP, "_finetune", spy_finetune)
    net = _trained_dlp(backbone, data, imitation={"epochs": 4, "batch_size": 32, "lr": 3e-3})
    assert seen["loss_after"] < seen["loss_before"]
    assert all(torch.equal(seen["before"][k], seen["after"][k]) for k in seen["before"])
    assert not all(torch.equal(v, net.state_dict()[k]) for k, v in backbone.state_dict().items())  # the backbone moved


def test_budget_statistics_round_trip(tiny):
    from prunebench.methods.dlp import BudgetStatistics

    backbone, _ = tiny
    net = copy.deepcopy(backbone)
    norms = net.backbone_norms()
    slots = BudgetStatistics(norms, net.num_blocks)
    original = [m.running_mean.clone() for m in norms]
    for m in norms:
        m.running_mean.add_(1.0)
    slots.store(norms, 2)
    for m in norms:
        m.running_mean.zero_()
    slots.load(norms, 2)
    assert all(torch.equal(m.running_mean, o + 1.0) for m, o in zip(norms, original))
    slots.load(norms, 1, nearest=False)  # never stored: still the statistics it was made with
    assert all(torch.equal(m.running_mean, o) for m, o in zip(norms, original))


def test_every_budget_gets_its_own_recalibrated_statistics_and_the_shared_ablation_one(tiny):
    from prunebench.methods.dlp import load_budget_statistics

    backbone, data = tiny
    net = _trained_dlp(backbone, data)
    slots = net.policy.budget_statistics
    assert slots.seen.all() or slots.seen[1:].all()
    assert not torch.equal(slots.stats[1], slots.stats[net.num_blocks])
    load_budget_statistics(net, slots, 1)
    assert torch.equal(torch.cat([t for m in net.backbone_norms() for t in (m.running_mean, m.running_var)]),
                       slots.stats[1])
    shared = get_method("dlp_shared_bn").derive(copy.deepcopy(net), data, get_method("dlp").resolve_hp(None),
                                                RunContext(seed=0))
    assert shared.policy.budget_statistics is None
    pretrained = get_method("dlp_pretrained")._with_policy(backbone, net, RunContext())
    assert torch.equal(pretrained.blocks[0].conv1.conv.weight, backbone.blocks[0].conv1.conv.weight)
    assert pretrained.policy is not None and pretrained.policy.budget_statistics is None


def test_two_rounds_run(tiny):
    backbone, data = tiny
    net = _trained_dlp(backbone, data, rounds=2, recalibrate_images=0)
    result = get_method("dlp").evaluate(net, data, 2, RunContext())
    assert result.records["blocks_executed"].eq(2).all()


def test_top_blocks_is_exact_and_breaks_ties_by_index():
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.1], [3.0, 1.0, 2.0, 0.0]])
    assert top_blocks(scores, 2).tolist() == [[1, 1, 0, 0], [1, 0, 1, 0]]
    random = torch.randn(100, 9)
    for b in range(1, 10):
        assert top_blocks(random, b).sum(1).eq(b).all()


def test_ranking_hinge_loss_cases():
    ranks = torch.tensor([[0, 1, 2]])  # block 2 most important
    assert ranking_hinge_loss(torch.tensor([[0.0, 1.0, 2.0]]), ranks).item() == 0  # right order, margins met
    wrong = ranking_hinge_loss(torch.tensor([[2.0, 1.0, 0.0]]), ranks).item()
    # pairs (0<1), (0<2), (1<2): violations 1+1/3, 2+1/3, 1+1/3
    assert wrong == pytest.approx((4 + 1) / 3)
    tight = ranking_hinge_loss(torch.tensor([[0.0, 0.1, 0.2]]), ranks).item()  # right order, margin 1/3 unmet
    assert 0 < tight < wrong


def test_budget_sampling_prefers_small_removals():
    w = removal_budget_weights(9)
    assert w[0] == 64 and w[-1] == 0 and (w[:-1] > w[1:]).all()


def test_budget_is_a_hard_per_sample_cap(tiny):
    backbone, data = tiny
    method = get_method("dlp")
    hp = method.resolve_hp(method.quick_hp)
    net = method.train(backbone, data, backbone.num_blocks, hp, RunContext(seed=0))
    for b in range(1, backbone.num_blocks + 1):
        result = method.evaluate(net, data, b, RunContext())
        assert result.records["blocks_executed"].max() == b == result.records["blocks_executed"].min()
    assert result.summary["controller_macs"] > 0  # the policy network is counted


def test_oracle_needs_known_images(tiny):
    backbone, data = tiny
    method = get_method("dlp_oracle")
    net = method.train(backbone, data, 2, method.resolve_hp(method.quick_hp), RunContext(seed=0))
    method.configure(net, 2)
    normalize = Normalizer(data.mean, data.std)
    with torch.no_grad():
        net(normalize(data.test_x[:4]))
        with pytest.raises(Exception, match="test images only"):
            net(normalize(data.train_x[:4]))


def test_ranking_agreement_counts_pairs_in_the_experts_order():
    from prunebench.methods.dlp import ranking_agreement

    ranks = torch.tensor([[0, 1, 2, 3]])
    assert ranking_agreement(torch.tensor([[0.1, 0.2, 0.3, 0.4]]), ranks).tolist() == [1.0]
    assert ranking_agreement(torch.tensor([[0.4, 0.3, 0.2, 0.1]]), ranks).tolist() == [0.0]
    assert ranking_agreement(torch.tensor([[0.2, 0.1, 0.3, 0.4]]), ranks).item() == pytest.approx(5 / 6)
