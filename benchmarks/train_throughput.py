"""Images/s of the harness training step vs a plain eager PyTorch step: same model, data, batch.

The plain step: contiguous tensors, eager mode, fp32, crop+flip on tensors. The harness step: what
prunebench's `fit` runs for a pretraining job (channels_last, torch.compile as `compile: auto`
picks for >= 2000 steps, bf16 autocast where `precision: auto` picks it, the optimizer from
`make_optimizer`); `--precision fp32` times the harness without autocast. A 2-core machine's speed drifts
(other tenants, clocks), so the two are timed in alternating short rounds (ABBA order) and the
ratio is reported per round: its median and its spread. The one-time compilation is reported
apart, and amortised over the default config's pretraining.
Usage: python benchmarks/train_throughput.py [--rounds 12] [--steps 15] [--dataset fashion_mnist] [--threads N] [--precision auto]
The last line is `ratio <median harness / plain> (min .. max over rounds)`.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from prunebench.api import RunContext
from prunebench.backbones import build_backbone
from prunebench.data import Dataset, Normalizer, augment, batch_indices, load_dataset
from prunebench.train import TrainSpec, _maybe_compile, autocast_dtype, make_optimizer, step_autocast


class Loop:
    """One training loop over endless shuffled batches; `run(steps)` returns its seconds."""

    def __init__(self, data: Dataset, batch_size: int, harness: bool, precision: str = "auto"):
        torch.manual_seed(0)
        self.data, self.gen = data, torch.Generator().manual_seed(0)
        net = build_backbone("resnet20", data.num_classes, data.in_channels)
        spec = TrainSpec(batch_size=batch_size, lr=0.05, compile="on", precision=precision)
        self.dtype = autocast_dtype(spec, torch.device("cpu")) if harness else None
        fmt = torch.channels_last if harness else torch.contiguous_format
        net.to(memory_format=fmt).train()
        self.opt = (make_optimizer(net.parameters(), spec) if harness else
                    torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4))
        self.model = _maybe_compile(net, spec, 10**6, RunContext()) if harness else net
        self.normalize = Normalizer(data.mean, data.std, "cpu", fmt)
        self.batch_size, self.batches = batch_size, iter(())

    def _next(self):
        idx = next(self.batches, None)
        if idx is None:
            self.batches = batch_indices(len(self.data.train_x), self.batch_size, shuffle=True,
                                         generator=self.gen, drop_last=True)
            idx = next(self.batches)
        return idx

    def run(self, steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = self._next()
            x = self.normalize(augment(self.data.train_x[idx], pad=2, flip=True, generator=self.gen))
            with step_autocast(self.dtype, torch.device("cpu")):
                loss = F.cross_entropy(self.model(x), self.data.train_y[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=15, help="steps per loop per round")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); two "
                        "--threads 1 runs side by side against one --threads 2 run: what a job should claim")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="the harness's")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, val_size=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dataset} {tuple(data.train_x.shape[1:])}, "
          f"ResNet-20, batch {args.batch_size}, {args.rounds} rounds of {args.steps} steps each")
    plain, harness = Loop(data, args.batch_size, False), Loop(data, args.batch_size, True, args.precision)
    print(f"harness steps in {'fp32' if harness.dtype is None else 'bf16 autocast'} (precision {args.precision})")
    first = harness.run(args.steps)  # compiles
    plain.run(5)
    compile_s = first - harness.run(args.steps)
    times = {"plain": [], "harness": []}
    for r in range(args.rounds):
        for name in (("plain", "harness") if r % 2 == 0 else ("harness", "plain")):
            times[name].append((plain if name == "plain" else harness).run(args.steps))
    images = args.steps * args.batch_size
    ratios = sorted(p / h for p, h in zip(times["plain"], times["harness"]))
    for name, ts in times.items():
        print(f"{name:8s} loop {images / statistics.median(ts):8.1f} images/s (median of {len(ts)} rounds)")
    harness_ips = images / statistics.median(times["harness"])
    epochs_images = 8 * len(data.train_x)  # the default config's pretraining: 8 epochs
    amortised = epochs_images / (compile_s + epochs_images / harness_ips)
    plain_ips = images / statistics.median(times["plain"])
    print(f"one-time compile {compile_s:6.1f} s; amortised over 8 epochs of {args.dataset}: {amortised:.1f} images/s "
          f"({amortised / plain_ips:.2f}x)")
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    print(f"ratio {statistics.median(ratios):.2f} ({ratios[0]:.2f} .. {ratios[-1]:.2f} over rounds; quartiles {q1:.2f} .. {q3:.2f})")


if __name__ == "__main__":
    main()
