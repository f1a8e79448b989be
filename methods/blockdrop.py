"""BlockDrop (Wu et al., CVPR 2018, arXiv 1711.08393): block skipping by an RL policy.

A ResNet-8 looks at the image once and outputs a keep-probability per residual block; at test
time block k runs iff s_k >= 0.5. The policy is trained by REINFORCE with a self-critical
baseline, first by a curriculum with the backbone frozen, then jointly with the backbone.
Details follow the official code (github.com/Tushar-N/blockdrop, cl_training.py / finetune.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli

from prunebench.api import Method, UserError, copy_backbone
from prunebench.claims import Claim
from prunebench.backbones import build_backbone
from prunebench.gates import UpfrontBlockGates
from prunebench.train import TrainSpec, fit, recalibrate_bn


def blockdrop_reward(logits: torch.Tensor, targets: torch.Tensor, policy: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per sample: 1 - (blocks used / K)^2 if the prediction is correct, else -gamma (paper eq. 3)."""
    used = policy.sum(1) / policy.shape[1]
    correct = logits.argmax(1) == targets
    return torch.where(correct, 1.0 - used ** 2, torch.full_like(used, -gamma))


def draw_policies(probs: torch.Tensor, alpha: float, decided: torch.Tensor):
    """The greedy policy (s >= 0.5 on the raw probabilities: the self-critical baseline), a sample from
    the bounded probabilities s' = alpha*s + (1-alpha)*(1-s), and s'. Blocks the curriculum has not
    reached yet (`decided` False) are forced on in both policies."""
    bounded = alpha * probs + (1 - alpha) * (1 - probs)
    greedy = (probs.detach() >= 0.5).float()
    sample = torch.bernoulli(bounded.detach())
    forced = ~decided
    greedy[:, forced] = 1.0
    sample[:, forced] = 1.0
    return greedy, sample, bounded


def curriculum_decided(num_blocks: int, epoch: int) -> torch.Tensor:
    """Epoch e of the curriculum lets the policy decide the last e+1 blocks (paper sec. 3.3)."""
    decided = torch.zeros(num_blocks, dtype=torch.bool)
    decided[max(num_blocks - (epoch + 1), 0):] = True
    return decided


class BlockDropPolicy(UpfrontBlockGates):
    """Keep-probabilities from a ResNet-8 on the image; block k runs iff s_k >= 0.5 (or as `given`)."""

    def __init__(self, num_blocks: int, in_channels: int, width: int):
        super().__init__()
        self.net = build_backbone("resnet8", num_blocks, in_channels, width=width)
        self.given: torch.Tensor | None = None  # policies set by the training loop (sampled / greedy)
        # blocks the curriculum has not handed to the policy yet: on, also when the stage is validated
        self.forced_on: torch.Tensor | None = None
        self.keep = None

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))

    def begin(self, x):
        if self.given is not None:
            self.keep = self.given
            return
        self.keep = (self.probabilities(x) >= 0.5).float()
        if self.forced_on is not None:
            self.keep[:, self.forced_on.to(x.device)] = 1.0


class BlockDrop(Method):
    # The paper counts FLOPs = 2 x MACs: 1.81e8 FLOPs = 9.05e7 MACs of ResNet-110's 252.89M (policy included).
    # Schedules: He et al.'s 164 epochs for the backbone; the official runs' 5000 curriculum and 2000 joint epochs.
    claims = (Claim("resnet110", "ResNet-110 on CIFAR-10: 93.6 % with 16.93 of 54 blocks at 0.358 of dense MACs "
                    "(dense 93.2 %)", "BlockDrop, CIFAR-10 results", "cifar10", "resnet110",
                    (("pretrain", 164), ("curriculum", 5000), ("finetune", 2000)), macs_frac=0.358, accuracy=0.936,
                    dense_accuracy=0.932, margin=0.005),)

    name = "blockdrop"
    deviations = ("the backbone at a lower rate than the policy, BN statistics re-estimated (where set)",)
    knob = "gamma"            # the penalty for a wrong prediction: larger keeps more blocks
    test_time_knob = False
    # The curriculum does not depend on gamma: like the official runs, one curriculum policy per
    # backbone, fine-tuned jointly at each gamma.
    artifacts = {"curriculum_policy": ("policy_width", "alpha", "beta", "curriculum_penalty", "curriculum")}
    hyperparameters = {
        "policy_width": 16,           # ResNet-8 widths 16/32/64, as the official CIFAR policy
        "alpha": 0.8,                 # probability bounding
        "beta": 0.1,                  # entropy bonus (curriculum only)
        "curriculum_penalty": 1.0,    # the curriculum's gamma (official cl_training default: -1)
        "curriculum": {"epochs": 60, "batch_size": 2048, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                       "schedule": "constant", "compile": "off"},
        "finetune": {"epochs": 20, "batch_size": 256, "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0,
                     "schedule": "constant", "compile": "off"},
        # [choice] the backbone's rate in the joint stage as a multiple of the policy's (official: 1, one Adam at
        # 1e-4): with the policy at a larger rate for a short schedule, the backbone keeps the official 1e-4
        "backbone_lr_scale": 1.0,
        # [choice] BN statistics re-estimated under the greedy (test-time) policy after the joint stage, on this
        # many training images (0: off, the official code): that stage runs the backbone in train mode under
        # sampled policies, which drop each block with probability >= 1 - alpha, so its running statistics are
        # those of networks the test never runs (CIFAR-10, gamma 8, every block kept: 82.25 -> 83.12 %)
        "recalibrate_images": 0,
    }
    quick_hp = {"curriculum": {"epochs": 3, "batch_size": 64}, "finetune": {"epochs": 1, "batch_size": 64}}

    def budget_range(self, backbone):
        return (0.0, 100.0)

    def resolve_hp(self, hp):
        hp = super().resolve_hp(hp)
        if hp["backbone_lr_scale"] < 0 or hp["recalibrate_images"] < 0:
            raise UserError(f"{self.name}: backbone_lr_scale and recalibrate_images must be >= 0")
        return hp

    def training_stages(self, hp, budget):
        return {"finetune": 1}  # joint: backbone and policy; the curriculum trains the policy alone (policy images)

    def _with_policy(self, backbone, data, hp, run):
        net = copy_backbone(backbone, run.device)
        net.policy = BlockDropPolicy(net.num_blocks, data.in_channels, hp["policy_width"]).to(run.device)
        return net, net.policy, net.num_blocks

    def prepare(self, artifact, backbone, data, hp, run):
        """Stage 1 (cl_training.py): the policy alone, backbone frozen in eval mode, the last e+1
        blocks decided in epoch e, reward penalty `curriculum_penalty`, entropy bonus beta."""
        if artifact != "curriculum_policy":
            raise UserError(f"blockdrop has no artifact {artifact!r}")
        k = backbone.num_blocks
        spec = TrainSpec.from_dict(hp["curriculum"], "blockdrop.curriculum")
        if spec.epochs < k:
            raise UserError(f"blockdrop: curriculum.epochs is {spec.epochs}, but the curriculum adds one block "
                            f"per epoch: it needs at least {k} epochs for this backbone's {k} blocks")
        net, policy, _ = self._with_policy(backbone, data, hp, run)
        decided = torch.ones(k, dtype=torch.bool)
        # The log shows what the stage optimises: the sampled policies' reward and blocks kept, and the
        # validation accuracy under the curriculum's mask (the policy's outputs for the blocks it does
        # not decide yet are untrained: under them the network is near chance).
        last, kept = {}, []

        def start_epoch(epoch):
            if kept:
                run.log.info("blockdrop-curriculum epoch %d: sampled policies kept %.2f of %d blocks", epoch,
                             sum(kept) / len(kept), k)
                kept.clear()
            decided.copy_(curriculum_decided(k, epoch))
            policy.forced_on = ~decided
            run.log.info("blockdrop-curriculum epoch %d: the policy decides the last %d of %d blocks (the others "
                         "are on, in validation too)", epoch + 1, int(decided.sum()), k)
            net.eval()
            policy.train()

        def loss_fn(model, x, y):
            mask = decided.to(x.device)
            log_prob, advantage, bounded, preds, sample = policy_gradient(
                net, x, y, hp["alpha"], hp["curriculum_penalty"], mask, train_backbone=False)
            pg = -(log_prob * advantage[:, None] * mask.float()).sum()  # undecided blocks: loss masked
            p = bounded.clamp(1e-15, 1 - 1e-15)
            entropy = -(p * torch.log(p)).sum()  # the official bonus: -s' log s' (not the binary entropy)
            last["sample"] = sample
            kept.append(float(sample.sum(1).mean()))
            return (pg - hp["beta"] * entropy) / len(y), preds

        def reward(logits, y):
            return blockdrop_reward(logits, y, last["sample"], hp["curriculum_penalty"])

        try:
            fit(net, data, spec, run, name="blockdrop-curriculum", loss_fn=loss_fn, params=policy.parameters(),
                on_epoch_start=start_epoch, metric=reward, metric_name="reward", counts_as="policy")
        finally:
            policy.forced_on = None
        if kept:
            run.log.info("blockdrop-curriculum epoch %d: sampled policies kept %.2f of %d blocks", spec.epochs,
                         sum(kept) / len(kept), k)
        return {"policy": {k: v.cpu() for k, v in policy.state_dict().items()}}

    def train(self, backbone, data, budget, hp, run):
        """Stage 2 (finetune.py): policy gradient summed over the batch + cross-entropy, everything
        in train mode, reward penalty gamma = the budget."""
        gamma = float(budget)
        net, policy, k = self._with_policy(backbone, data, hp, run)
        curriculum = run.artifact("curriculum_policy", lambda: self.prepare("curriculum_policy", backbone, data, hp, run))
        policy.load_state_dict(curriculum["policy"])
        everything = torch.ones(k, dtype=torch.bool)

        def loss_fn(model, x, y):
            log_prob, advantage, _, preds, _ = policy_gradient(net, x, y, hp["alpha"], gamma, everything.to(x.device),
                                                               train_backbone=True)
            return -(log_prob.sum(1) * advantage).sum() + F.cross_entropy(preds, y), preds

        spec = TrainSpec.from_dict(hp["finetune"], "blockdrop.finetune")
        fit(net, data, spec, run, name="blockdrop-finetune", loss_fn=loss_fn,
            params=[{"params": list(policy.parameters())},  # first: the rate the log shows
                    {"params": net.backbone_parameters(), "lr": spec.lr * hp["backbone_lr_scale"]}])
        recalibrate_bn(net, data, hp["recalibrate_images"])
        return net.eval()


def policy_gradient(net, x, y, alpha: float, gamma: float, decided: torch.Tensor, train_backbone: bool):
    """One REINFORCE draw: log-probabilities of a sampled policy, its self-critical advantage over
    the greedy policy, the bounded probabilities, the sampled policy's logits and the sampled policy."""
    policy = net.policy
    greedy, sample, bounded = draw_policies(policy.probabilities(x), alpha, decided)
    # The curriculum's backbone is frozen in eval mode and no gradient flows through it: skip mode runs each
    # sample's kept blocks only, BN folded into the convs (the same function; a 9-epoch curriculum 1.5x faster
    # in fp32 with the same policy learned, 1.4x in bf16 with rounding-level differences; docs/choices.md)
    mode = "mask" if train_backbone else "skip"
    try:
        with torch.no_grad():
            policy.given = greedy
            preds_greedy = net(x, mode)
        with torch.set_grad_enabled(train_backbone):
            policy.given = sample
            preds_sample = net(x, mode)
    finally:
        policy.given = None
    advantage = (blockdrop_reward(preds_sample.detach(), y, sample, gamma)
                 - blockdrop_reward(preds_greedy, y, greedy, gamma))
    return Bernoulli(bounded).log_prob(sample), advantage, bounded, preds_sample, sample
