"""How much of the MACs saved by skip mode turns into time: random gates against the plain reference.

For each backbone (ResNet-20/56/110), input (28x28x1, 32x32x3), batch (1, 64), gate kind and keep
fraction: random block gates (each sample keeps that fraction of blocks), random top-k channel
gates and prefix channel gates (each inner branch conv keeps that fraction of its outputs; top-k
picks different channels per sample). Theory speedup = dense MACs / the accountant's MACs of the
trace; realized = the plain reference's time (prunebench.plain: BN folded, channels_last, eager) /
the gated network's skip-mode time; ratio = realized / theory.
With --limits it prints, instead, what no gate machinery can beat at keep 0.5: plain networks that are
physically what the gates ask for (the kept blocks only, the same for every sample; every inner branch
conv half as wide) against the plain dense network.
Usage: python benchmarks/skip_latency.py [--json rows.json] [--backbones resnet20 resnet56 resnet110]
       [--gates block topk prefix] [--limits]
"""

import argparse
import copy
import json
import math
import statistics
import time
import zlib

import torch
from torch import nn

from prunebench.backbones import build_backbone
from prunebench.flops import Accountant
from prunebench.gates import ChannelGate, GatePolicy, UpfrontBlockGates, top_k_mask
from prunebench.plain import plain_reference

KEEPS = (0.25, 0.5, 0.75)
INPUTS = {"28x28": (1, 28, 28), "32x32": (3, 32, 32)}


class RandomBlocks(UpfrontBlockGates):
    """Each sample keeps round(keep * K) blocks drawn at random: drawn once per batch size, as the
    benchmark times the skip machinery with the decisions given (a method's policy has its own cost)."""

    def __init__(self, num_blocks: int, keep: float):
        super().__init__()
        self.num_blocks, self.k = num_blocks, max(1, round(keep * num_blocks))
        self.drawn = {}

    def begin(self, x):
        n = x.shape[0]
        if n not in self.drawn:
            scores = torch.rand(n, self.num_blocks, generator=torch.Generator().manual_seed(n))
            self.drawn[n] = top_k_mask(scores, self.k).float()
        self.keep = self.drawn[n]


class RandomChannels(GatePolicy):
    """Each inner branch conv keeps ceil(keep * C) outputs: random top-k per sample, or the prefix
    (drawn once per unit and batch size, as RandomBlocks)."""

    def __init__(self, net, keep: float, prefix: bool):
        super().__init__()
        self.widths = {b.prefix + u: getattr(b, u).out_channels for b in net.blocks for u in b.unit_names[:-1]}
        self.gated_units = frozenset(self.widths)
        self.keep, self.prefix = keep, prefix
        self.drawn = {}

    def channel_gate(self, unit, pooled):
        n = pooled.shape[0]
        if (unit, n) not in self.drawn:
            c = self.widths[unit]
            k = max(1, math.ceil(self.keep * c - 1e-9))
            if self.prefix:
                mask = torch.zeros(n, c, device=pooled.device)
                mask[:, :k] = 1
                gate = ChannelGate(mask, prefix=torch.full((n,), k, device=pooled.device))
            else:
                gen = torch.Generator().manual_seed(zlib.crc32(unit.encode()))
                gate = ChannelGate(top_k_mask(torch.rand(n, c, generator=gen), k).float())
            self.drawn[unit, n] = gate
        return self.drawn[unit, n]


def paired_ms(fns, x, repeats: int) -> list[float]:
    """Median ms of each function, timed in alternation (a 2-core machine's speed drifts)."""
    times = [[] for _ in fns]
    with torch.no_grad():
        for fn in fns:
            for _ in range(3):
                fn(x)
        for _ in range(repeats):
            for fn, ts in zip(fns, times):
                t0 = time.perf_counter()
                fn(x)
                ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) * 1000 for ts in times]


def physical_limits(net, accountant, shape, repeats: int) -> list[str]:
    """Rows at keep 0.5: the plain network of the kept blocks only (the same for every sample), and the
    one whose inner branch convs are half as wide, each against the plain dense network."""
    plain = plain_reference(net)
    blocks, half = copy.deepcopy(plain), copy.deepcopy(plain)
    gates = RandomBlocks(net.num_blocks, 0.5)
    gates.begin(torch.zeros(1, *shape))  # its batch-1 draw, in gates.keep
    for block, kept in zip(blocks.blocks, gates.keep[0].tolist()):
        if not kept:
            block.convs = nn.ModuleList()  # the shortcut alone
    for block in half.blocks:
        first, last = block.convs[0], block.convs[-1]
        block.convs[0] = nn.Conv2d(first.in_channels, first.out_channels // 2, 3, first.stride, 1)
        block.convs[-1] = nn.Conv2d(first.out_channels // 2, last.out_channels, 3, 1, 1)
    theory = {}
    for label, policy in (("kept blocks", gates), ("half-width branches", RandomChannels(net, 0.5, prefix=True))):
        net.policy = policy  # the MACs the limit network computes, by the same accountant
        with torch.no_grad():
            _, trace = net.run(torch.zeros(1, *shape).contiguous(memory_format=torch.channels_last), "skip")
        theory[label] = accountant.dense_macs / float(accountant.backbone_macs(trace)[0])
    net.policy = None
    rows = []
    for batch in (1, 64):
        x = torch.randn(batch, *shape).contiguous(memory_format=torch.channels_last)
        for label, limit in (("kept blocks", blocks), ("half-width branches", half)):
            limit = limit.eval().to(memory_format=torch.channels_last)
            dense_ms, limit_ms = paired_ms([plain, limit], x, repeats if batch == 1 else max(5, repeats // 3))
            realized = dense_ms / limit_ms
            rows.append(f"{batch} | {label} | {theory[label]:.2f} / {realized:.2f} / **{realized / theory[label]:.2f}**")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet20", "resnet56", "resnet110"])
    parser.add_argument("--gates", nargs="+", default=["block", "topk", "prefix"], choices=["block", "topk", "prefix"])
    parser.add_argument("--repeats", type=int, default=21, help="timed forward pairs per row at batch 1 (a third at 64)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--limits", action="store_true", help="the physical limits at keep 0.5 instead")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.limits:
        print("| backbone | input | batch | plain network | keep 0.5: theory / realized / ratio |\n|---|---|---|---|---|")
        for name in args.backbones:
            for label, shape in INPUTS.items():
                net = build_backbone(name, 10, shape[0]).eval().to(memory_format=torch.channels_last)
                for row in physical_limits(net, Accountant(net, shape), shape, args.repeats):
                    print(f"| {name} | {label} | {row} |", flush=True)
        return
    print("| backbone | input | batch | gates | " + " | ".join(f"keep {k}: theory / realized / ratio" for k in KEEPS) + " |")
    print("|---|---|---|---|" + "---|" * len(KEEPS))
    for name in args.backbones:
        for label, shape in INPUTS.items():
            net = build_backbone(name, 10, shape[0]).eval().to(memory_format=torch.channels_last)
            accountant = Accountant(net, shape)
            plain = plain_reference(net)
            for batch in (1, 64):
                repeats = args.repeats if batch == 1 else max(5, args.repeats // 3)
                x = torch.randn(batch, *shape).contiguous(memory_format=torch.channels_last)
                for gates in args.gates:
                    cells = []
                    for keep in KEEPS:
                        net.policy = (RandomBlocks(net.num_blocks, keep) if gates == "block"
                                      else RandomChannels(net, keep, prefix=gates == "prefix"))
                        with torch.no_grad():
                            _, trace = net.run(x, "skip")
                        theory = accountant.dense_macs / float(accountant.backbone_macs(trace).mean())
                        plain_ms, gated_ms = paired_ms([plain, lambda inp: net(inp, "skip")], x, repeats)
                        realized = plain_ms / gated_ms
                        row = dict(backbone=name, input=label, batch=batch, gates=gates, keep=keep,
                                   theory=round(theory, 3), realized=round(realized, 3), ratio=round(realized / theory, 3))
                        rows.append(row)
                        cells.append(f"{theory:.2f} / {realized:.2f} / **{realized / theory:.2f}**")
                    print(f"| {name} | {label} | {batch} | {gates} | " + " | ".join(cells) + " |", flush=True)
                net.policy = None
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
