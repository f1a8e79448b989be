"""How long the default workflows (Fashion-MNIST and CIFAR-10) will take on this machine, before they start.

Times the plain training loop of `benchmarks/train_throughput.py` (the yardstick: contiguous, eager, fp32;
about a minute), detects whether training steps will run in bf16 (native bf16: AVX512-BF16 or AMX) or fp32
(AVX2 only), and scales the recorded cost of the default config on that machine class
(`docs/runs/records.csv`: plain-loop epochs of 55,000 images, from a timed run or, where marked, an estimate)
to this machine's yardstick. A GPU has no record yet: the estimate says so.
Usage: python benchmarks/estimate.py [--rounds 4] [--steps 15]   (or `make estimate`)
"""

import argparse
import csv
import statistics
from pathlib import Path

import torch

EPOCH_IMAGES = 55_000  # the unit: one epoch of Fashion-MNIST's training split
RECORDS = Path(__file__).resolve().parent.parent / "docs" / "runs" / "records.csv"


def machine_class() -> str:
    """'gpu', 'bf16' (training steps in bf16 autocast) or 'avx2' (fp32 steps), as `precision: auto` decides."""
    from prunebench.train import native_bf16

    if torch.cuda.is_available():
        return "gpu"
    return "bf16" if native_bf16(torch.device("cpu")) else "avx2"


def minutes(plain_loop_epochs: float, images_per_s: float) -> float:
    """Wall minutes of a run that costs `plain_loop_epochs` on a machine whose plain loop runs `images_per_s`."""
    return plain_loop_epochs * EPOCH_IMAGES / images_per_s / 60


def record(kind: str, config: str = "config/config.yaml", path: Path = RECORDS) -> dict | None:
    with open(path, newline="") as f:
        return next((r for r in csv.DictReader(f) if r["machine_class"] == kind and r["config"] == config), None)


def yardstick(rounds: int, steps: int) -> float:
    """The plain loop's images/s on Fashion-MNIST, median over short rounds after a warm-up."""
    from train_throughput import Loop

    from prunebench.data import load_dataset

    loop = Loop(load_dataset("fashion_mnist", val_size=5000), 128, harness=False)
    loop.run(3)
    return statistics.median(steps * 128 / loop.run(steps) for _ in range(rounds))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    kind = machine_class()
    speed = yardstick(args.rounds, args.steps)
    print(f"this machine: {kind} ({'bf16' if kind == 'bf16' else 'fp32'} training steps), plain loop {speed:.0f} images/s")
    for config in ("config/config.yaml", "config/cifar10.yaml"):
        found = record(kind, config)
        if found is None:
            bf16 = record("bf16", config)
            print(f"{config}: no record for a {kind} machine yet" + (
                f"; the bf16 CPU record scales to {minutes(float(bf16['plain_loop_epochs']), speed):.0f} min at this "
                f"yardstick (a lower bound for fp32 steps)" if bf16 else ""))
        else:
            epochs = float(found["plain_loop_epochs"])
            print(f"{config}: about {minutes(epochs, speed):.0f} min ({epochs:g} plain-loop epochs "
                  f"of {EPOCH_IMAGES:,} images; {found['source']})")
    print("smoke (config/smoke.yaml): about 2-3 min (start-up bound: 131 s on 2026-12-03)")


if __name__ == "__main__":
    main()
