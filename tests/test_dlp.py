import pytest
import torch

from prunebench.api import RunContext, get_method
from prunebench.data import Normalizer
from prunebench.methods.dlp import (FixedMasks, greedy_ranks, ranking_hinge_loss, removal_budget_weights,
                                    top_blocks)


def test_first_greedy_removal_matches_brute_force(tiny):
    net, data = tiny
    normalize = Normalizer(data.mean, data.std)
    x, y = data.test_x[:6], data.test_y[:6]
    ranks = greedy_ranks(net, x, y, normalize, batch_size=4)
    k = net.num_blocks
    assert sorted(ranks[0].tolist()) == list(range(k))  # every block gets one removal step
    saved = net.policy
    net.policy = FixedMasks()
    with torch.no_grad():
        for i in range(len(y)):
            logits = []
            for j in range(k):  # brute force: drop block j alone, in mask mode
                net.policy.keep = torch.ones(1, k)
                net.policy.keep[0, j] = 0
                logits.append(net(normalize(x[i:i + 1]))[0, y[i]].item())
            best = max(range(k), key=lambda j: (logits[j], -j))
            assert ranks[i].tolist().index(0) == best
    net.policy = saved


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
