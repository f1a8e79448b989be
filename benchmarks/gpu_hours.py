"""An estimate of a config's GPU-hours per method, from its images and MACs, before any GPU has timed it.

Counts each job's images the way the training loop does (`prunebench.budget.stage_images`): pretraining per
seed; each method's artifacts once per backbone and seed; each trained model's weight-training stages;
policy-only stages that run the frozen backbone forward (BlockDrop's curriculum, DLP's imitation, RNP's
rollouts); every evaluation on the test split. A weight-training image costs 3 x the backbone's forward MACs
(forward and backward), a forward-only one 1 x (the policy networks are left out: a few % of a ResNet).
Hours = 2 FLOPs per MAC x MACs / an assumed sustained rate (`--tflops`; default 7.5: ResNet-56 training at
about 10,000 images/s, what an A100- or H100-class GPU sustains on CIFAR-sized convs at batch 128). It is an
estimate: a timed run on a GPU replaces it (docs/cluster.md).
Usage: python benchmarks/gpu_hours.py [config/paper-cifar10.yaml] [--tflops 7.5]
"""

import argparse
from collections import defaultdict

import torch

from prunebench.api import get_method
from prunebench.backbones import build_backbone
from prunebench.budget import images_for, matched_hp, stage_images
from prunebench.config import _option, load_config, method_budgets, replicate_budgets
from prunebench.flops import macs_by_module

TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000, "fashion_mnist": 60_000}
TEST_SIZE = 10_000
SHAPE = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "fashion_mnist": (1, 28, 28)}


def forward_macs(cfg: dict, backbone: str) -> float:
    shape = SHAPE[cfg["data"]["name"]]
    net = build_backbone(backbone, 100 if cfg["data"]["name"] == "cifar100" else 10, shape[0],
                         shortcut=_option(cfg, "shortcut", backbone), width=_option(cfg, "width", backbone)).eval()
    return sum(macs_by_module(net, torch.zeros(1, *shape)).values())


def policy_images(name: str, hp: dict, train_size: int) -> int:
    """Images of a policy-only stage that runs the frozen backbone forward, per model (per backbone: BlockDrop)."""
    if "curriculum" in hp and name.startswith("blockdrop"):
        return stage_images(hp["curriculum"], train_size, "curriculum")
    if "imitation" in hp:
        return stage_images(hp["imitation"], train_size, "imitation")
    if "q_steps" in hp:
        return hp["rounds"] * hp["q_steps"] * hp["rollout_batch"]
    return 0


def method_images(cfg: dict, name: str, backbone: str, train_size: int) -> tuple[float, float, int]:
    """(weight-training images, forward-only images, evaluations) of one method on one backbone, all seeds."""
    method = get_method(name)
    if method.derived_from:
        return 0.0, 0.0, _evaluations(cfg, name, backbone)
    hp = method.resolve_hp(cfg["methods"][name]["hp"])
    images = images_for(cfg, method)
    weights = forward = 0.0
    for seed in cfg["seeds"] + cfg["replicate_seeds"]:
        budgets = replicate_budgets(cfg, name, backbone) if seed in cfg["replicate_seeds"] \
            else method_budgets(cfg, name, backbone)[0]
        if seed not in cfg["replicate_seeds"]:  # a replicate reuses the first seed's artifacts
            shared = matched_hp(method, hp, train_size, images) if images else hp
            weights += sum(stage_images(shared[s], train_size, s) for stages in method.artifact_stages.values()
                           for s in stages)
            if name.startswith("blockdrop"):
                forward += policy_images(name, hp, train_size)  # one curriculum per backbone and seed
        for budget in budgets:
            own = matched_hp(method, hp, train_size, images, budget) if images else hp
            weights += sum(m * stage_images(own[s], train_size, s)
                           for s, m in (method.training_stages(own, budget) or {}).items() if m)
            if not name.startswith("blockdrop"):
                forward += policy_images(name, hp, train_size)
    return weights, forward, _evaluations(cfg, name, backbone)


def _evaluations(cfg: dict, name: str, backbone: str) -> int:
    train, evals = method_budgets(cfg, name, backbone)
    per_model = len(evals) or 1
    replicated = len(replicate_budgets(cfg, name, backbone)) * len(cfg["replicate_seeds"])
    return per_model * (len(train) * len(cfg["seeds"]) + replicated)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="config/paper-cifar10.yaml")
    parser.add_argument("--tflops", type=float, default=7.5, help="sustained training rate assumed (TFLOP/s)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    train_size = TRAIN_SIZE[cfg["data"]["name"]] - cfg["data"]["val_size"]
    hours = defaultdict(float)

    def add(row: str, macs: float):
        hours[row] += 2 * macs / (args.tflops * 1e12) / 3600

    for backbone in cfg["backbone"]["names"]:
        macs = forward_macs(cfg, backbone)
        add("pretrain", len(cfg["seeds"]) * cfg["pretrain"]["epochs"] * train_size * 3 * macs)
        for name, entry in cfg["methods"].items():
            if name == "dense" or backbone not in entry["backbones"]:
                continue
            weights, forward, evaluations = method_images(cfg, name, backbone, train_size)
            add(name, (3 * weights + forward + evaluations * TEST_SIZE) * macs)
    total = sum(hours.values())
    print(f"{args.config}: estimated GPU-hours at {args.tflops:g} TFLOP/s sustained (2 FLOPs per MAC)")
    print(f"| {'rule or method':18s} | GPU-hours | share |\n|:---|---:|---:|")
    for row, h in sorted(hours.items(), key=lambda kv: -kv[1]):
        print(f"| {row:18s} | {h:9.1f} | {h / total:5.1%} |")
    print(f"| {'total':18s} | {total:9.1f} | 100% |")


if __name__ == "__main__":
    main()
