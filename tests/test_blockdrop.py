import pytest
import torch

from prunebench.api import RunContext, copy_backbone, get_method
from prunebench.train import set_seed
from prunebench.methods.blockdrop import (BlockDropPolicy, blockdrop_reward, curriculum_decided,
                                          draw_policies)


def test_reward_cases():
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    targets = torch.tensor([0, 0, 0, 0])  # the third prediction is wrong
    policy = torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
    reward = blockdrop_reward(logits, targets, policy, gamma=5.0)
    # correct with all blocks: 1 - 1 = 0; correct with none: 1; wrong: -gamma (even with all blocks); half: 0.75
    assert reward.tolist() == [0.0, 1.0, -5.0, 0.75]
    wrong_without_blocks = blockdrop_reward(logits[2:3], targets[:1], policy[1:2], gamma=5.0)
    assert wrong_without_blocks.item() == -5.0  # no sparsity credit when wrong


def test_curriculum_decides_the_last_blocks_first_and_forces_the_rest_on():
    assert curriculum_decided(5, 0).tolist() == [False, False, False, False, True]
    assert curriculum_decided(5, 2).tolist() == [False, False, True, True, True]
    assert curriculum_decided(5, 4).all() and curriculum_decided(5, 10).all()
    torch.manual_seed(0)
    probs = torch.full((200, 5), 0.1)  # the policy would drop every block
    greedy, sample, bounded = draw_policies(probs, 0.8, curriculum_decided(5, 1))
    assert (greedy[:, :3] == 1).all() and (sample[:, :3] == 1).all()  # forced on
    assert (greedy[:, 3:] == 0).all() and sample[:, 3:].mean() < 0.5  # decided by the policy
    assert torch.allclose(bounded, torch.full_like(probs, 0.8 * 0.1 + 0.2 * 0.9))  # s' = a*s + (1-a)(1-s)


def test_blocks_the_curriculum_has_not_handed_over_stay_on_in_validation(tiny, caplog):
    backbone, data = tiny
    policy = BlockDropPolicy(backbone.num_blocks, data.in_channels, 8).eval()
    torch.nn.init.zeros_(policy.net.fc.weight)
    torch.nn.init.constant_(policy.net.fc.bias, -5.0)  # s ~ 0: the policy would drop every block
    policy.forced_on = ~curriculum_decided(backbone.num_blocks, 0)
    with torch.no_grad():
        policy.begin(torch.randn(4, data.in_channels, *data.image_size))
    assert policy.keep.tolist() == [[1.0, 1.0, 0.0]] * 4
    method = get_method("blockdrop")
    with caplog.at_level("INFO", logger="prunebench"):  # the log names what the stage optimises
        method.prepare("curriculum_policy", backbone, data, method.resolve_hp(method.quick_hp), RunContext())
    assert "reward" in caplog.text and "kept" in caplog.text and "decides the last 1 of 3" in caplog.text


def test_curriculum_needs_an_epoch_per_block(tiny):
    backbone, data = tiny
    method = get_method("blockdrop")
    hp = method.resolve_hp({"curriculum": {"epochs": backbone.num_blocks - 1}})
    with pytest.raises(Exception, match="at least 3 epochs"):
        method.prepare("curriculum_policy", backbone, data, hp, RunContext())


@pytest.mark.parametrize("seed", [0, 1])
def test_larger_gamma_keeps_more_blocks(tiny, seed):
    """A wrong prediction costs gamma: when mistakes are cheap the policy drops more blocks. (The
    paper's direction; the curriculum stage alone, with the backbone frozen, isolates the reward.)"""
    backbone, data = tiny
    method = get_method("blockdrop")
    blocks = {}
    for gamma in (0.0, 10.0):
        hp = method.resolve_hp({"policy_width": 4, "curriculum_penalty": gamma,
                                "curriculum": {"epochs": 15, "batch_size": 64}})
        set_seed(seed)  # the policy's initial weights too (the CLI seeds before every step)
        trained = method.prepare("curriculum_policy", backbone, data, hp, RunContext(seed=seed))
        net = copy_backbone(backbone)
        net.policy = BlockDropPolicy(net.num_blocks, data.in_channels, 4)
        net.policy.load_state_dict(trained["policy"])
        blocks[gamma] = method.evaluate(net.eval(), data, gamma, RunContext()).records["blocks_executed"].mean()
    assert blocks[0.0] < blocks[10.0]


def test_joint_stage_backbone_rate_and_bn_statistics_under_the_greedy_policy(tiny):
    """backbone_lr_scale 0 leaves the backbone's weights as pretrained while the policy trains; with
    recalibrate_images the BN statistics are those re-estimated under the trained (greedy) policy."""
    from prunebench.train import recalibrate_bn

    backbone, data = tiny
    method = get_method("blockdrop")
    hp = method.resolve_hp({"policy_width": 4, "curriculum": {"epochs": 3, "batch_size": 64},
                            "finetune": {"epochs": 1, "batch_size": 64}, "backbone_lr_scale": 0.0,
                            "recalibrate_images": 256})
    set_seed(0)
    curriculum = method.prepare("curriculum_policy", backbone, data, hp, RunContext(seed=0))
    method.prepare = lambda *args: curriculum  # the joint stage starts from this policy
    net = method.train(backbone, data, 2.0, hp, RunContext(seed=0))
    assert any(not torch.equal(p, curriculum["policy"][k]) for k, p in net.policy.named_parameters())
    convs = [n for n, _ in backbone.named_parameters() if "conv" in n]
    trained, pretrained = dict(net.named_parameters()), dict(backbone.named_parameters())
    assert convs and all(torch.equal(trained[n], pretrained[n]) for n in convs)
    stats = [m.running_mean.clone() for m in net.backbone_norms()]
    assert not all(torch.equal(a, m.running_mean) for a, m in zip(stats, backbone.backbone_norms()))
    recalibrate_bn(net, data, 256)  # the same sample and augmentation: the same statistics again
    assert all(torch.allclose(a, m.running_mean) for a, m in zip(stats, net.backbone_norms()))
