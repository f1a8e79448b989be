"""Adaptive slimming (Zhang et al., "Layer Pruning for Accelerating Very Deep Neural Networks"):
network slimming's BN-gamma channel pruning (Liu et al. 2017) iterated with the sparsity term kept on
while fine-tuning (Sec. 4.3), and layer pruning: a BN left with one channel is bridged by a 1x1 conv
or its block removed (Sec. 4.4). The result is exported as a physically smaller network.

The sparsity-trained network is an artifact; every budget prunes it down in its own rounds, within
its own training budget (a chain of budgets would give the smaller ones their ancestors' training too).
"""

from __future__ import annotations

import copy
import dataclasses
import functools

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.api import Method, RunContext, UserError, copy_backbone
from prunebench.backbones import GatedResNet
from prunebench.claims import NOT_COMPARABLE, Claim, Judgement, against, difference, noise_text, pt
from prunebench.data import Dataset
from prunebench.flops import Accountant
from prunebench.gates import ConvUnit, StaticChannelPolicy
from prunebench.prune import physically_pruned
from prunebench.train import TrainSpec, backbone_cross_entropy, fit

BRIDGE_INITS = ("compose", "zero")


def prunable_norms(net: GatedResNet) -> dict[str, nn.BatchNorm2d]:
    """Gate point -> the BN whose gamma decides it: every inner branch unit's BN (its outputs feed
    only the next conv) and, in pre-activation blocks, the input-side BN (network slimming's channel
    selection: the stream it reads is not pruned, the first conv's input channels are)."""
    norms = {}
    for block in net.blocks:
        if block.removed:
            continue
        if block.pre_gate is not None:
            norms[block.pre_gate] = block.pre_norm
        for name in block.unit_names[:-1]:
            unit = getattr(block, name)
            if unit.norm is not None:
                norms[block.prefix + name] = unit.norm
    return norms


def sparsity_loss(norms, l1: float):
    """Cross-entropy + l1 * sum|gamma| (Sec. 4.2): its gradient adds l1 * sign(gamma), as network slimming's update."""
    def loss_fn(model, x, y):
        logits = model(x)
        penalty = sum(m.weight.abs().sum() for m in norms)
        return F.cross_entropy(logits, y) + l1 * penalty, logits
    return loss_fn


class Pruner:
    """Masks on one network's prunable BNs, their cost by the one accountant, and layer removal."""

    def __init__(self, net: GatedResNet, image_shape, bridge_init: str):
        self.net, self.image_shape, self.bridge_init = net, tuple(image_shape), bridge_init
        device = next(net.parameters()).device
        self.masks = {k: torch.ones(m.num_features, dtype=torch.bool, device=device)
                      for k, m in prunable_norms(net).items()}
        self.bridged: list[str] = []
        self._refresh()

    def _refresh(self):
        """After a structural change: the accountant of the new structure, the policy of the masks."""
        self.accountant = Accountant(self.net, self.image_shape)
        self._apply(self.masks)

    def _apply(self, masks):
        self.net.policy = StaticChannelPolicy({k: m.float() for k, m in masks.items()})

    @torch.no_grad()
    def cost(self, masks=None) -> float:
        """Fraction of dense MACs with `masks` (default: the current ones)."""
        self._apply(self.masks if masks is None else masks)
        was_training = self.net.training
        self.net.eval()
        try:
            x = torch.zeros(1, *self.image_shape, device=next(self.net.parameters()).device)
            _, trace = self.net.run(x)
            return float(self.accountant.backbone_macs(trace)[0]) / self.accountant.dense_macs
        finally:
            self.net.train(was_training)
            self._apply(self.masks)

    def _masks_at(self, threshold: float) -> dict:
        """Masks after pruning every kept channel with |gamma| <= threshold (one global threshold);
        a pre-activation selection keeps at least its largest channel [choice]."""
        norms = prunable_norms(self.net)
        out = {}
        for key, mask in self.masks.items():
            gamma = norms[key].weight.detach().abs()
            new = mask & (gamma > threshold)
            if key.endswith("pre_norm") and not new.any():
                new[torch.where(mask, gamma, torch.full_like(gamma, -1.0)).argmax()] = True
            out[key] = new
        return out

    def prune_to(self, target: float) -> None:
        """Raise the global |gamma| threshold to the smallest value whose cost is <= target, bridge
        what is left with at most one channel, and repeat while bridges leave the cost above target."""
        while self.cost() > target + 1e-12:
            norms = prunable_norms(self.net)
            kept = torch.cat([norms[k].weight.detach().abs()[m] for k, m in self.masks.items()])
            values = torch.unique(kept).tolist()  # ascending: candidate thresholds
            if not values:
                break  # every prunable channel is gone
            lo, hi = 0, len(values) - 1           # pruning through values[hi] reaches the floor
            while lo < hi:
                mid = (lo + hi) // 2
                if self.cost(self._masks_at(values[mid])) <= target + 1e-12:
                    hi = mid
                else:
                    lo = mid + 1
            before = {k: int(m.sum()) for k, m in self.masks.items()}
            self.masks = self._masks_at(values[lo])
            if not self._bridge_thin_layers() and before == {k: int(m.sum()) for k, m in self.masks.items()}:
                break  # nothing left to prune (the floor of this structure)

    def _bridge_thin_layers(self) -> bool:
        """Sec. 4.4: an inner BN with at most one channel left: bridge conv_a -> BN -> ReLU -> conv_b
        by one 1x1 conv (compose) or remove the block (zero). True if the structure changed."""
        changed = False
        for block in self.net.blocks:
            for a, b in zip(block.unit_names[:-1], block.unit_names[1:]):
                key = block.prefix + a
                if key in self.masks and int(self.masks[key].sum()) <= 1:
                    self._bridge(block, a, b)
                    changed = True
                    break  # one bridge per block per pass: the names have changed
        if changed:
            self.net.pruned = True
            self._refresh()
        return changed

    def _bridge(self, block, a: str, b: str) -> None:
        keep = self.masks.pop(block.prefix + a)
        self.bridged.append(f"{block.prefix}{a}+{b}")
        if self.bridge_init == "zero" or not keep.any():
            # 4.4.1: a zero 1x1 conv: the branch contributes nothing, the whole block is removed. With no channel
            # left, composing gives that zero conv too (plus conv_b's BN shift, a constant): the block goes, so
            # its C_in x C_out MACs are not counted for a constant.
            for key in [k for k in self.masks if k.startswith(block.prefix)]:
                del self.masks[key]
            block.replace_units(list(block.unit_names), {})
            return
        unit = compose_bridge(getattr(block, a), getattr(block, b), keep)
        new = f"{a}_{b}"
        if block.prefix + b in self.masks:
            self.masks[block.prefix + new] = self.masks.pop(block.prefix + b)
        block.replace_units([a, b], {new: unit})

    def floor(self) -> float:
        """The least cost pruning can reach on this structure: every prunable channel pruned, bridged."""
        other = Pruner(copy.deepcopy(self.net), self.image_shape, self.bridge_init)
        other.masks = other._masks_at(float("inf"))
        while other._bridge_thin_layers():
            other.masks = other._masks_at(float("inf"))
        return other.cost()

    def export(self) -> GatedResNet:
        """The physically smaller network: kept channels only, bridges as 1x1 convs, removed blocks gone."""
        keep = {k: m.nonzero().flatten() for k, m in self.masks.items() if not bool(m.all())}
        self.net.policy = None
        return physically_pruned(self.net, keep)


@torch.no_grad()
def compose_bridge(unit_a: ConvUnit, unit_b: ConvUnit, keep: torch.Tensor) -> ConvUnit:
    """4.4.2: the 1x1 conv (stride kept, with bias) composing conv_a -> BN -> (ReLU as identity) ->
    conv_b over the kept channels `keep` (bool), 3x3 kernels summed over space; followed by conv_b's
    BN and activation. Exact when the ReLU passes everything and the kernels are 1x1."""
    conv_a, conv_b = unit_a.conv, unit_b.conv
    weight_a, bias_a = unit_a.folded_weights()               # conv_a -> BN as one affine map
    a = weight_a[keep].sum((2, 3))                           # (k, C_in)
    shift = bias_a[keep] if bias_a is not None else torch.zeros(len(a), device=a.device)
    b = conv_b.weight[:, keep].sum((2, 3))                   # (C_out, k)
    bias = b @ shift + (conv_b.bias if conv_b.bias is not None else 0)
    stride = conv_a.stride[0] * conv_b.stride[0]
    conv = nn.Conv2d(conv_a.in_channels, conv_b.out_channels, 1, stride=stride, bias=True).to(a.device, a.dtype)
    conv.weight.copy_((b @ a)[:, :, None, None])
    conv.bias.copy_(bias)
    return ConvUnit(conv, unit_b.norm, unit_b.relu)


@functools.lru_cache(maxsize=None)
def _floor(spec_items) -> float:
    """Fraction of dense MACs no channel or layer pruning removes: stem, classifier, conv shortcuts.
    The fraction does not depend on the CIFAR input size (each stage halves it), so 32x32 stands in."""
    net = GatedResNet(**dict(spec_items))
    acc = Accountant(net, (net.spec["in_channels"], 32, 32))
    fixed = sum(c.dense_macs for name, c in acc.units.items() if name in ("stem", "fc") or name.endswith("shortcut"))
    return fixed / acc.dense_macs


def _keeps_dense_accuracy_at_half_the_parameters(ev):
    """With half of the parameters removed, the accuracy does not decrease: slimming's frontier in parameters
    (the exported network's count over the dense one's) interpolated at 0.5, against the dense network, the
    accuracy difference's interval at or above -0.5 pt (the one margin rule, docs/claims.md#margins) holds."""
    if not ev.has("slimming", "dense") or "params_frac" not in ev.rows:
        return None
    est = ev.at_cost("slimming", 0.5, cost="params_frac")
    if est is None:
        low, high = ev.points("slimming", "params_frac")["params_frac"].agg(["min", "max"])
        return Judgement(NOT_COMPARABLE, f"the pruned networks keep {low:.3f}-{high:.3f} of the parameters: none "
                                         f"at or below half")
    d = difference(est, ev.dense())
    boundary = -0.005  # 0.3 pt until 2026-12-06 (a margin changed after a result: docs/claims.md#margins)
    return Judgement(against(d, boundary), f"{est.accuracy:.2%} at half the parameters ({est.macs_frac:.3f} of dense MACs), "
                              f"{pt(d.value)} [{pt(d.low)}, {pt(d.high)}] from dense",
                     pt(d.value - boundary), noise_text(d), d.seeds)


class Slimming(Method):
    """Iterative BN-gamma channel pruning with the sparsity term kept on, and layer removal by 1x1 bridges."""

    name = "slimming"
    deviations = ("lambda relative to the measured cross-entropy (l1_ce_ratio, where set)",)
    knob = "flops_frac"
    no_pruning = 1.0
    static = True
    claims = (Claim("keeps-dense-accuracy", "with half of the parameters removed the accuracy does not decrease "
                    "(within 0.5 pt, the one margin rule)", "adaptive slimming, abstract", "cifar10", "preresnet164",
                    published="(half of the parameters)", check=_keeps_dense_accuracy_at_half_the_parameters),)
    hyperparameters = {
        # network slimming's lambda for ResNet-164 over its 160 epochs; a schedule of one epoch needs ~300x
        # more (the default config: 3e-3, with what was measured)
        "l1": 1e-5,
        # [choice] when set, lambda is this many times the pretrained network's cross-entropy over its sum |gamma|:
        # the sparsity term starts at that multiple of the loss on any dataset (the paper's lambda is absolute)
        "l1_ce_ratio": None,
        "sparsity": {"epochs": 1, "lr": 0.02, "schedule": "cosine"},   # the sparsity-trained network (an artifact)
        "iterations": 2,        # prune + fine-tune rounds from the start's cost down to the budget
        "finetune": {"epochs": 1, "lr": 0.01, "schedule": "cosine"},   # each round, with the sparsity term on
        "bridge_init": "compose",   # or "zero" (Sec. 4.4.1: remove the block); compose keeps what the branch knew
    }
    artifacts = {"sparse": ("l1", "l1_ce_ratio", "sparsity")}
    quick_hp = {"sparsity": {"epochs": 1, "batch_size": 64, "compile": "off"}, "iterations": 2,
                "finetune": {"epochs": 1, "batch_size": 64, "compile": "off"}}

    artifact_stages = {"sparse": ("sparsity",)}

    def budget_range(self, backbone):
        return (_floor(tuple(sorted(backbone.spec.items()))), 1.0)

    def training_stages(self, hp, budget):
        return {"finetune": hp["iterations"]}

    def resolve_hp(self, hp):
        hp = super().resolve_hp(hp)
        if hp["bridge_init"] not in BRIDGE_INITS:
            raise UserError(f"{self.name}: bridge_init must be one of {BRIDGE_INITS}, not {hp['bridge_init']!r}")
        if hp["iterations"] < 1 or hp["l1"] < 0 or (hp["l1_ce_ratio"] or 0) < 0:
            raise UserError(f"{self.name}: iterations must be >= 1, l1 and l1_ce_ratio >= 0")
        return hp

    def prepare(self, artifact, backbone, data, hp, run):
        """Sparsity training of the dense network (network slimming's first step)."""
        net = copy_backbone(backbone, run.device)
        spec = TrainSpec.from_dict(hp["sparsity"], f"{self.name}.sparsity")
        fit(net, data, spec, run, name=f"{self.name}-sparsity",
            loss_fn=sparsity_loss(list(prunable_norms(net).values()), self._l1(backbone, data, hp, run)))
        return net.cpu()

    def _l1(self, backbone: GatedResNet, data: Dataset, hp, run: RunContext) -> float:
        """lambda: hp l1, or with l1_ce_ratio set, the value at which the pretrained network's sparsity term is
        l1_ce_ratio x its cross-entropy (measured on seed 0's sample: one lambda for the artifact and every round)."""
        if hp["l1_ce_ratio"] is None:
            return hp["l1"]
        gammas = sum(m.weight.abs().sum().item() for m in prunable_norms(backbone).values())
        ce = backbone_cross_entropy(backbone, data, seed=0)
        run.log.info("%s: lambda %.4g (%g x cross-entropy %.4f over sum |gamma| %.1f)", self.name,
                     hp["l1_ce_ratio"] * ce / gammas, hp["l1_ce_ratio"], ce, gammas)
        return hp["l1_ce_ratio"] * ce / gammas

    def train(self, backbone: GatedResNet, data: Dataset, budget, hp, run: RunContext) -> GatedResNet:
        start = run.artifact("sparse", lambda: self.prepare("sparse", backbone, data, hp, run))
        net = copy_backbone(start, run.device)
        pruner = Pruner(net, (data.in_channels, *data.image_size), hp["bridge_init"])
        floor = pruner.floor()
        if budget < floor - 1e-9:
            raise UserError(f"{self.name}: budget {budget:g} is below what pruning every prunable channel costs "
                            f"({floor:.3f} of dense MACs with {hp['bridge_init']} bridges); choose a budget >= {floor:.3f}")
        begin = pruner.cost()
        l1 = self._l1(backbone, data, hp, run)
        spec = TrainSpec.from_dict(hp["finetune"], f"{self.name}.finetune")
        for i in range(1, hp["iterations"] + 1):
            pruner.prune_to(begin + (budget - begin) * i / hp["iterations"])
            run.log.info("%s: round %d at %.3f of dense MACs, %d bridges", self.name, i, pruner.cost(), len(pruner.bridged))
            # Sec. 4.3: fine-tune with the sparsity term still on, preparing the next prune.
            # Each round and budget draws its own batches (one seed would give every round the same subset).
            round_run = dataclasses.replace(run, seed=run.seed * 1_000_003 + round(budget * 1e4) * 101 + i)
            fit(net, data, spec, round_run, name=f"{self.name}-{budget:g}-round{i}",
                loss_fn=sparsity_loss(list(prunable_norms(net).values()), l1))
        return pruner.export()
