"""How much of the MACs saved by skip mode turns into time: random gates against the plain reference.

For each backbone (ResNet-20/56/110), input (28x28x1, 32x32x3), batch (1, 64), gate kind and keep
fraction: random block gates (each sample keeps that fraction of blocks), random top-k channel
gates and prefix channel gates (each inner branch conv keeps that fraction of its outputs; top-k
picks different channels per sample). Theory speedup = dense MACs / the accountant's MACs of the
trace; realized = the plain reference's time (prunebench.plain: BN folded, channels_last, eager) /
the gated network's skip-mode time; ratio = realized / theory.
Usage: python benchmarks/skip_latency.py [--json rows.json] [--backbones resnet20 resnet56 resnet110]
"""

import argparse
import json
import math
import statistics
import time
import zlib

import torch

from prunebench.backbones import build_backbone
from prunebench.flops import Accountant
from prunebench.gates import ChannelGate, GatePolicy, top_k_mask
from prunebench.plain import plain_reference

KEEPS = (0.25, 0.5, 0.75)
INPUTS = {"28x28": (1, 28, 28), "32x32": (3, 32, 32)}


class RandomBlocks(GatePolicy):
    """Each sample keeps round(keep * K) blocks drawn at random."""

    gates_blocks = True

    def __init__(self, num_blocks: int, keep: float):
        super().__init__()
        self.num_blocks, self.k = num_blocks, max(1, round(keep * num_blocks))

    def begin(self, x):
        scores = torch.rand(x.shape[0], self.num_blocks, generator=torch.Generator().manual_seed(x.shape[0]))
        self.keep = top_k_mask(scores, self.k).float()

    def block_gate(self, index, pooled):
        return self.keep[:, index]


class RandomChannels(GatePolicy):
    """Each inner branch conv keeps ceil(keep * C) outputs: random top-k per sample, or the prefix."""

    def __init__(self, net, keep: float, prefix: bool):
        super().__init__()
        self.gated_units = frozenset(b.prefix + u for b in net.blocks for u in b.unit_names[:-1])
        self.keep, self.prefix = keep, prefix

    def channel_gate(self, unit, pooled):
        n, c = pooled.shape
        k = max(1, math.ceil(self.keep * c - 1e-9))
        if self.prefix:
            mask = torch.zeros(n, c, device=pooled.device)
            mask[:, :k] = 1
            return ChannelGate(mask, prefix=torch.full((n,), k, device=pooled.device))
        gen = torch.Generator().manual_seed(zlib.crc32(unit.encode()))
        return ChannelGate(top_k_mask(torch.rand(n, c, generator=gen), k).float())


def median_ms(fn, x, repeats: int) -> float:
    with torch.no_grad():
        for _ in range(3):
            fn(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet20", "resnet56", "resnet110"])
    parser.add_argument("--repeats", type=int, default=15, help="timed forwards per row at batch 1 (fewer at 64)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'backbone':10s} {'input':6s} {'batch':>5s} {'gates':7s} {'keep':>5s} {'theory':>7s} {'realized':>8s} {'ratio':>6s}")
    for name in args.backbones:
        for label, shape in INPUTS.items():
            net = build_backbone(name, 10, shape[0]).eval().to(memory_format=torch.channels_last)
            accountant = Accountant(net, shape)
            plain = plain_reference(net)
            for batch in (1, 64):
                repeats = args.repeats if batch == 1 else max(3, args.repeats // 3)
                x = torch.randn(batch, *shape).contiguous(memory_format=torch.channels_last)
                plain_ms = median_ms(plain, x, repeats)
                for gates in ("block", "topk", "prefix"):
                    for keep in KEEPS:
                        net.policy = (RandomBlocks(net.num_blocks, keep) if gates == "block"
                                      else RandomChannels(net, keep, prefix=gates == "prefix"))
                        with torch.no_grad():
                            _, trace = net.run(x, "skip")
                        theory = accountant.dense_macs / float(accountant.backbone_macs(trace).mean())
                        realized = plain_ms / median_ms(lambda inp: net(inp, "skip"), x, repeats)
                        row = dict(backbone=name, input=label, batch=batch, gates=gates, keep=keep,
                                   theory=round(theory, 3), realized=round(realized, 3), ratio=round(realized / theory, 3))
                        rows.append(row)
                        print(f"{name:10s} {label:6s} {batch:5d} {gates:7s} {keep:5.2f} {theory:7.2f} {realized:8.2f} "
                              f"{realized / theory:6.2f}", flush=True)
                net.policy = None
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
