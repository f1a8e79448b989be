"""RNP's decision learning on its own, before any fine-tuning: the greedy policy's cost and accuracy per penalty
and learner (Algorithm 1's bootstrapped Q-learning, or Monte-Carlo returns with a baseline), against random
actions on the same backbone.

A decision network that learns keeps nearly every group at p = 0 (>= 0.9 of dense MACs) and, at the most
negative penalty, costs less than random actions with higher accuracy than random actions at that cost. The
backbone is a pretrained model file (e.g. the default run's results/fashion_mnist/resnet20/seed0/pretrain/model.pt);
the decision hyperparameters are the default config's (rounds x q_steps updates, no fine-tuning between).
Usage: python benchmarks/rnp_decisions.py BACKBONE [--penalties 0 -1.25 -2.5] [--targets bootstrap monte_carlo] [--set q_lr=1e-3]
"""

import argparse
import copy

import torch
import yaml

from prunebench.api import RunContext, get_method
from prunebench.cli_models import load_model
from prunebench.config import load_config
from prunebench.data import load_dataset
from prunebench.evaluate import evaluate
from prunebench.methods.rnp import RNPPolicy, pruned_units
from prunebench.train import backbone_cross_entropy


def decisions_only(method, backbone, data, hp, penalty: float, seed: int = 0):
    """The backbone with a decision network trained for `rounds x q_steps` updates at `penalty`, backbone fixed."""
    net = copy.deepcopy(backbone)
    torch.manual_seed(seed)  # the decision network's initial weights
    policy = RNPPolicy(net, pruned_units(net), hp["groups"], hp["embedding"], hp["hidden"], hp["zero_heads"])
    net.policy = policy
    target = copy.deepcopy(policy.q)
    optimizer = torch.optim.Adam(policy.q.parameters(), lr=hp["q_lr"])
    draws = torch.Generator().manual_seed(seed * 1_000_003 + 17)
    policy.generator = torch.Generator().manual_seed(seed * 1_000_003 + 29)
    full = backbone_cross_entropy(net, data, seed)
    hp = {**hp, "alpha": hp["alpha"] or 1 / full}
    hp["penalty"] = penalty * method._penalty_unit(net, policy, data, hp, full, RunContext(seed=seed))  # config's unit
    for round_ in range(hp["rounds"]):
        method._learn_decisions(net, target, optimizer, draws, data, hp, RunContext(seed=seed), round_)
    return net


def _value(text: str):
    """A command-line value as YAML reads it, with 1e-3 a number (YAML 1.1 reads it as a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def row(net, data, what: str) -> dict:
    summary = evaluate(net, data, RunContext(seed=0)).summary
    return {"policy": what, "accuracy": summary["accuracy"], "macs_frac": summary["macs_frac"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbone")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--penalties", type=float, nargs="+", default=[0.0, -1.25, -2.5],
                        help="in the config's unit (penalty_unit)")
    parser.add_argument("--targets", nargs="+", default=["bootstrap", "monte_carlo"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="decision hyperparameters over the config's (YAML values), e.g. q_lr=1e-3")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cfg = load_config(args.config)
    d = cfg["data"]
    data = load_dataset(d["name"], d["path"], val_size=d["val_size"], download=d["download"])
    backbone, _ = load_model(args.backbone)
    method = get_method("rnp")
    hp = {**cfg["methods"]["rnp"]["hp"], **{k: _value(v) for k, v in (kv.split("=", 1) for kv in args.set)}}
    random = decisions_only(method, backbone, data, {**hp, "q_steps": 1, "rounds": 1}, 0.0, args.seed)
    random.policy.epsilon = 1.0  # every action drawn uniformly
    rows = [row(random, data, "random actions")]
    for targets in args.targets:
        for penalty in args.penalties:
            net = decisions_only(method, backbone, data, {**hp, "targets": targets}, penalty, args.seed)
            rows.append(row(net, data, f"{targets}, p = {penalty:g}"))
    print("| policy | accuracy | MACs (fraction of dense) |\n| --- | --- | --- |")
    for r in rows:
        print(f"| {r['policy']} | {100 * r['accuracy']:.2f} % | {r['macs_frac']:.3f} |")


if __name__ == "__main__":
    main()
