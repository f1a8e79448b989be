import math

import pytest
import torch

from prunebench.api import UserError, copy_backbone
from prunebench.data import Normalizer
from prunebench.methods.rnp import (DecisionNetwork, ReplayBuffer, RNPBias, RNPPolicy, decision_loss, greedy_actions,
                                    mc_targets, prefix_lengths, pruned_units, q_targets, soft_update, step_rewards)


def _rnp(backbone, epsilon=0.0, seed=0):
    net = copy_backbone(backbone)
    net.policy = RNPPolicy(net, pruned_units(net), groups=4, embedding=8, hidden=16)
    net.policy.epsilon = epsilon
    net.policy.generator = torch.Generator().manual_seed(seed)
    return net.eval()


def test_rewards_penalise_each_extra_group_and_the_loss_at_the_end():
    actions = torch.tensor([[0, 3, 1], [2, 2, 0]])  # i - 1 groups beyond the first
    ce = torch.tensor([0.5, 2.0])
    r = step_rewards(actions, ce, penalty=-0.1, alpha=2.0)
    assert torch.allclose(r, torch.tensor([[0.0, -0.3, -0.1 - 1.0], [-0.2, -0.2, 0.0 - 4.0]]))


def test_q_targets_bootstrap_from_the_next_step_except_at_the_end():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    next_max = torch.tensor([[10.0, 20.0, 30.0]])  # max_a Q'(s_t, a) for t = 0, 1, 2
    assert torch.allclose(q_targets(rewards, next_max, gamma=0.5), torch.tensor([[1 + 10.0, 2 + 15.0, 3.0]]))


def test_monte_carlo_targets_are_the_exact_returns_less_the_batch_mean_at_each_step():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, -1.0]])
    returns = torch.tensor([[1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0], [-0.25, -0.5, -1.0]])
    assert torch.allclose(mc_targets(rewards, gamma=0.5), returns - returns.mean(0))


def test_greedy_actions_break_ties_toward_the_larger_prefix():
    q = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 3.0, 3.0, 2.0], [5.0, 1.0, 1.0, 1.0]])
    assert greedy_actions(q).tolist() == [3, 2, 0]


@pytest.mark.parametrize("value_baseline", [True, False])
def test_image_difficulty_stays_in_the_state_value_so_untried_actions_do_not_win(value_baseline):
    """The full action is played on 90 % of images, the smallest on 10 % (1 worse); the return is minus the image's
    difficulty. With the value baseline the full action's advantage is the larger one on (nearly) every image;
    fitted as a Q-value, the head goes below 0 on hard images, where the untried actions, still at 0, win."""
    torch.manual_seed(0)
    q_net = DecisionNetwork([6], 4, 8, 16, zero_heads=True)
    pooled = [torch.randn(256, 6)]
    explored = torch.arange(256) % 10 == 0
    actions = torch.where(explored, 0, 3)[:, None]
    returns = -3 * pooled[0][:, :1].abs() - explored[:, None].float()
    optimizer = torch.optim.Adam(q_net.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        decision_loss(q_net, pooled, actions, returns - returns.mean(), value_baseline, 20.0).backward()
        optimizer.step()
    with torch.no_grad():
        kept_whole = (greedy_actions(q_net.q_values(pooled)) == 3).float().mean().item()
    assert kept_whole > 0.9 if value_baseline else kept_whole < 0.7


def test_soft_update_moves_the_target_by_tau():
    online, target = DecisionNetwork([4], 2, 3, 5), DecisionNetwork([4], 2, 3, 5)
    before = target.heads[0].bias.clone()
    soft_update(target, online, tau=0.25)
    assert torch.allclose(target.heads[0].bias, 0.75 * before + 0.25 * online.heads[0].bias)


def test_prefix_masks(tiny):
    assert prefix_lengths(16, 4) == [4, 8, 12, 16] and prefix_lengths(3, 4) == [1, 2, 2, 3]
    backbone, data = tiny
    net = _rnp(backbone)
    gate = net.policy
    gate.begin(torch.zeros(5, 3))
    g = gate.channel_gate("blocks.0.conv1", torch.randn(5, net.unit("blocks.0.conv1").conv.in_channels))
    width = net.unit("blocks.0.conv1").out_channels
    assert torch.equal(g.mask, torch.arange(width)[None, :] < g.prefix[:, None])  # prefixes, never subsets
    assert set(g.prefix.tolist()) <= set(prefix_lengths(width, 4))


def test_greedy_and_epsilon_greedy(tiny):
    backbone, data = tiny
    x = Normalizer(data.mean, data.std)(data.test_x[:32])

    def prefixes(net):
        with torch.no_grad():
            _, trace = net.run(x)
        return torch.stack([trace.gated_active[u] for u in sorted(trace.gated_active)])

    greedy = _rnp(backbone)
    assert torch.equal(prefixes(greedy), prefixes(greedy))  # greedy is a function of the input
    explore = [_rnp(backbone, epsilon=1.0, seed=s) for s in (0, 0, 1)]
    for net in explore:
        net.policy.load_state_dict(greedy.policy.state_dict())
    a, b, c = (prefixes(net) for net in explore)
    assert torch.equal(a, b) and not torch.equal(a, c)  # random actions, drawn from the seeded generator
    assert not torch.equal(a, prefixes(greedy))


def test_replay_buffer_keeps_the_newest_episodes_and_samples_deterministically():
    buffer = ReplayBuffer(capacity=5, generator=torch.Generator().manual_seed(0))
    for start in (0, 3):
        ids = torch.arange(start, start + 3, dtype=torch.float32)
        buffer.add([ids[:, None]], ids[:, None].long(), ids)
    assert len(buffer) == 5 and torch.equal(buffer.ce, torch.tensor([1.0, 2, 3, 4, 5]))
    pooled, actions, ce = buffer.sample(4)
    assert torch.equal(pooled[0][:, 0], ce) and torch.equal(actions[:, 0].float(), ce)  # rows stay episodes
    again = ReplayBuffer(capacity=5, generator=torch.Generator().manual_seed(0))
    again.add(buffer.pooled, buffer.actions, buffer.ce)
    assert torch.equal(again.sample(4)[2], ce)


def test_skip_mode_slices_prefixes_without_a_gather(tiny):
    backbone, data = tiny
    net = _rnp(backbone)
    x = Normalizer(data.mean, data.std)(data.test_x[:16])
    net.policy.q.heads[0].bias.data = torch.tensor([9.0, 0, 0, 0])  # the first conv keeps one group of four
    with torch.no_grad():
        logits, trace = net.run(x, "mask")
        logits_skip, trace_skip = net.run(x, "skip")
    assert torch.allclose(logits, logits_skip, atol=1e-4)
    cut = set()
    for unit in net.policy.gated_units:
        assert torch.equal(trace.active_out[unit], trace_skip.active_out[unit])
        keys = net.unit(unit).__dict__["_fold_cache"]
        # the folded weights are cut by a prefix length (a view), never by an index tensor
        assert all(isinstance(k[0], (int, type(None))) and isinstance(k[1], (int, type(None))) for k in keys)
        cut |= {k[1] for k in keys}
    assert net.unit("blocks.0.conv1").out_channels // 4 in cut


def test_alpha_from_the_measured_cross_entropy_and_penalty_per_layer_count(tiny, caplog):
    from prunebench.api import RunContext
    from prunebench.methods.rnp import RNP

    backbone, data = tiny
    method = RNP()
    hp = method.resolve_hp({**RNP.quick_hp, "penalty_layers": 3})
    with caplog.at_level("INFO"):
        net = method.train(backbone, data, -0.06, hp, RunContext(seed=0))
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("rnp: alpha"))
    gated = len(net.policy.widths)
    assert f"penalty {-0.06 * 3 / gated:.4g} per group and step over {gated} gated convs" in line
    from prunebench.train import backbone_cross_entropy
    ce = backbone_cross_entropy(copy_backbone(backbone), data, 0)
    assert abs(float(line.split()[2].rstrip(",")) - 1 / ce) < 1e-3 * (1 / ce)


def test_penalty_in_units_of_a_groups_mean_harm(tiny, caplog):
    """penalty_unit group_harm: p = -1 is worth alpha * (CE with one group everywhere - CE unpruned) / (T (k - 1))
    rewards, measured on the pretrained backbone; the narrowest network's loss is the larger."""
    from prunebench.api import RunContext
    from prunebench.methods.rnp import RNP, RNPPolicy, pruned_units
    from prunebench.train import backbone_cross_entropy

    backbone, data = tiny
    method = RNP()
    hp = method.resolve_hp({**RNP.quick_hp, "penalty_unit": "group_harm", "rounds": 1, "q_steps": 1,
                            "finetune": {"epochs": 0}})
    with caplog.at_level("INFO"):
        trained = method.train(backbone, data, -2.0, hp, RunContext(seed=0))
    assert trained.policy.q_bias == 0.0  # the narrowest actions were forced only to measure the unit
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("rnp: alpha"))
    net = copy_backbone(backbone)
    policy = RNPPolicy(net, pruned_units(net), 4, 8, 8)
    policy.q.heads = torch.nn.ModuleList(torch.nn.Linear(8, 4) for _ in policy.widths)
    for head in policy.q.heads:  # Q-values that always pick the first group
        torch.nn.init.zeros_(head.weight)
        head.bias.data = torch.tensor([1.0, 0.0, 0.0, 0.0])
    full = backbone_cross_entropy(net, data, 0)
    narrowest = backbone_cross_entropy(net, data, 0, policy=policy)
    unit = (narrowest - full) / full / (len(policy.widths) * 3)
    assert narrowest > full and math.isclose(float(line.split()[4]), -2.0 * unit, rel_tol=1e-3)
    assert math.isclose(trained.policy.reward_per_p, unit, rel_tol=1e-3)  # rnp_bias's bias is in this unit
    with pytest.raises(UserError, match="penalty_unit"):
        method.train(backbone, data, -2.0, method.resolve_hp({"penalty_unit": "groups"}), RunContext(seed=0))
    with pytest.raises(UserError, match="set one of them"):
        method.train(backbone, data, -2.0, method.resolve_hp({"penalty_unit": "group_harm", "penalty_layers": 18}),
                     RunContext(seed=0))


def test_rnp_bias_is_in_units_of_p_and_refuses_a_model_without_one(tiny):
    """b = -p undoes the penalty's reward per group: the Q-values get b * (what p = 1 is worth) per extra group."""
    backbone, data = tiny
    net = copy_backbone(backbone)
    net.policy = RNPPolicy(net, pruned_units(net), 4, 8, 8)
    net.policy.reward_per_p = 0.25
    RNPBias().configure(net, 2.0)
    assert net.policy.q_bias == 0.5
    del net.policy.reward_per_p  # a model pickled before the unit was recorded
    with pytest.raises(UserError, match="re-run its training"):
        RNPBias().configure(net, 2.0)


@pytest.mark.parametrize("targets", ["monte_carlo", "bootstrap"])
def test_both_learners_learn_a_per_step_penalty(tiny, targets):
    """With a large per-group penalty the returns favour the smallest prefix at every layer; the greedy actions
    of either learner (ours, and Algorithm 1's bootstrapped one) find it within their updates (no fine-tuning)."""
    from prunebench.api import RunContext, UserError
    from prunebench.methods.rnp import RNP

    backbone, data = tiny
    method = RNP()
    hp = method.resolve_hp({**RNP.quick_hp, "targets": targets, "q_steps": 60, "finetune": {"epochs": 0}})
    net = method.train(backbone, data, -1.0, hp, RunContext(seed=0))
    with torch.no_grad():
        net.policy.recording = True
        net(Normalizer(data.mean, data.std)(data.test_x[:64]))
    actions = torch.stack(net.policy.episode[1], 1)
    assert (actions == 0).float().mean() > 0.8
    with pytest.raises(UserError, match="targets must be"):
        method.train(backbone, data, -1.0, method.resolve_hp({**RNP.quick_hp, "targets": "td"}), RunContext(seed=0))
