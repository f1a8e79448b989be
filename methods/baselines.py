"""Baselines every table needs: the dense backbone, random block dropping at a block
budget (DLP's comparison), and uniform static width (the floor a dynamic method must beat)."""

from __future__ import annotations

import math

import torch

from prunebench.api import Method, RunContext, copy_backbone
from prunebench.backbones import GatedResNet
from prunebench.data import Dataset
from prunebench.gates import StaticChannelPolicy, UpfrontBlockGates, random_scores
from prunebench.train import TrainSpec, fit


class Dense(Method):
    """The unpruned backbone: the 100 % point of every curve."""

    name = "dense"
    knob = "none"
    static = True
    hyperparameters = {}

    def training_stages(self, hp, budget):
        return {}  # trains no weights

    def budget_range(self, backbone):
        return (1.0, 1.0)

    def train(self, backbone, data, budget, hp, run):
        return copy_backbone(backbone, run.device)


class RandomBlockPolicy(UpfrontBlockGates):
    """Keeps exactly `blocks` residual blocks per sample, chosen uniformly at random.

    The draw is a hash of the image content and the seed, so the same image gets the same blocks
    in mask and skip mode and on every run, while different images get independent draws.
    """

    def __init__(self, num_blocks: int, blocks: int, seed: int = 0):
        super().__init__()
        self.num_blocks, self.blocks, self.seed = num_blocks, blocks, seed
        self.keep = None

    def begin(self, x):
        scores = random_scores(x, self.num_blocks, self.seed)
        top = scores.topk(self.blocks, dim=1).indices
        self.keep = torch.zeros(x.shape[0], self.num_blocks).scatter_(1, top, 1.0).to(x.device)


class RandomDrop(Method):
    """Random layer dropping to a per-sample block budget (test-time knob, no training)."""

    name = "random_drop"
    knob = "blocks"
    # with every block kept the policy keeps every block: the pretrained dense network itself, an identity that
    # cannot fail, so no sanity row
    no_pruning = None
    test_time_knob = True
    hyperparameters = {}

    def training_stages(self, hp, budget):
        return {}  # trains no weights

    def budget_range(self, backbone):
        return (1, backbone.num_blocks)

    def train(self, backbone, data, budget, hp, run):
        net = copy_backbone(backbone, run.device)
        net.policy = RandomBlockPolicy(net.num_blocks, net.num_blocks, run.seed)
        return net

    def configure(self, net, budget):
        net.policy.blocks = int(budget)


def branch_units(net: GatedResNet) -> list[str]:
    """The convs inside residual branches (what width pruning gates; the stream width is kept)."""
    return [u for u in net.unit_names() if u.startswith("blocks.") and not u.endswith("shortcut")]


def l1_keep_mask(net: GatedResNet, unit: str, fraction: float) -> torch.Tensor:
    """Keep the ceil(fraction*C) filters of largest L1 norm (Li et al. 2017) [choice]."""
    weight = net.unit(unit).conv.weight.detach()
    keep = max(1, math.ceil(fraction * weight.shape[0] - 1e-9))
    top = weight.abs().flatten(1).sum(1).topk(keep).indices
    return torch.zeros(weight.shape[0], dtype=torch.bool, device=weight.device).index_fill_(0, top, True)


class UniformWidth(Method):
    """Every branch conv keeps the same fraction of its channels, statically; then fine-tuned."""

    name = "uniform_width"
    knob = "width"
    no_pruning = 1.0
    static = True
    hyperparameters = {"finetune": {"epochs": 2, "lr": 0.01, "schedule": "cosine"}}

    def training_stages(self, hp, budget):
        return {"finetune": 1}

    def budget_range(self, backbone):
        return (0.01, 1.0)

    def train(self, backbone: GatedResNet, data: Dataset, budget, hp, run: RunContext):
        net = copy_backbone(backbone, run.device)
        net.policy = StaticChannelPolicy({u: l1_keep_mask(net, u, budget) for u in branch_units(net)})
        spec = TrainSpec.from_dict(hp["finetune"], f"{self.name}.finetune")
        fit(net, data, spec, run, name=f"{self.name}-finetune")
        return net
