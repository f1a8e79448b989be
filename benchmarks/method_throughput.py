"""Images/s of each method's own gated training step as the harness runs it (channels_last; fp32, and bf16
autocast) against the same step as a plain eager loop (contiguous, fp32).

Each round runs the method's real `train` with a short schedule: its other stages shrink to a few
batches, the timed stage (the default config's middle budget; slimming's sparsity training, every other
method's fine-tuning) trains `--images` images at the default config's batch size; the stage's images/s
is read from `fit`'s log line. The loops take turns (plain, fp32, bf16, then reversed), so the machine's
drift shifts all alike. bf16 is left out where `precision: auto` picks fp32 (no native bf16).
To see an AVX2-only CPU's code path on an AVX-512 one: ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2.
Usage: python benchmarks/method_throughput.py [--methods fbs dlp ...] [--rounds 2] [--images 2560]
"""

import argparse
import logging
import re
import statistics

import torch

from prunebench.api import RunContext, get_method
from prunebench.backbones import build_backbone
from prunebench.data import load_dataset
from prunebench.train import native_bf16

# method -> (budget: the default config's middle one, its timed stage's hyperparameter, the name `fit` logs it under)
TIMED = {"fbs": (0.5, "finetune", "fbs-d0.5"), "dlp": (9, "finetune", "dlp-finetune-0"),
         "blockdrop": (2, "finetune", "blockdrop-finetune"), "sanp": (0.5, "finetune", "sanp-finetune"),
         "rnp": (-0.003, "finetune", "rnp-finetune-0"), "lcnet": (0.01, "finetune", "lcnet-finetune"),
         "slimming": (0.6, "sparsity", "slimming-sparsity")}
MIN_EPOCHS = {("blockdrop", "curriculum"): 9}  # ResNet-20's 9 blocks
LOOPS = {"plain": {"channels_last": False, "precision": "fp32"}, "fp32": {"channels_last": True, "precision": "fp32"},
         "bf16": {"channels_last": True, "precision": "bf16"}}


class StageSpeed(logging.Handler):
    """Keeps the images/s of the last epoch `fit` logged for one stage."""

    def __init__(self, stage: str):
        super().__init__()
        self.pattern, self.images_per_s = re.compile(rf"^{re.escape(stage)} epoch .*\((\d+) img/s\)$"), None

    def emit(self, record):
        match = self.pattern.match(record.getMessage())
        if match:
            self.images_per_s = float(match.group(1))


def stage_speed(name: str, data, images: int, loop: str) -> float:
    method = get_method(name)
    budget, stage, logged = TIMED[name]
    hp = method.resolve_hp(method.quick_hp)
    for key, value in hp.items():  # every other training stage: a few batches (BlockDrop's curriculum: one epoch per block)
        if isinstance(value, dict) and value.get("epochs"):
            hp[key] = {**value, "epochs": MIN_EPOCHS.get((name, key), 1), "epoch_images": 256}
    if "recalibrate_images" in hp:
        hp["recalibrate_images"] = 256
    hp[stage] = {**method.hyperparameters[stage], "epochs": 1, "epoch_images": images, **LOOPS[loop]}
    torch.manual_seed(0)
    backbone = build_backbone("resnet20", data.num_classes, data.in_channels)
    run = RunContext(progress=False)
    handler = StageSpeed(logged)
    run.log.addHandler(handler)
    run.log.setLevel(logging.INFO)
    try:
        method.train(backbone, data, budget, hp, run)
    finally:
        run.log.removeHandler(handler)
    if handler.images_per_s is None:
        raise RuntimeError(f"{name}: no log line of stage {logged!r}")
    return handler.images_per_s


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(TIMED), choices=list(TIMED))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, default=2560, help="images of the timed stage per round")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("fashion_mnist", val_size=0)
    loops = ["plain", "fp32"] + (["bf16"] if native_bf16(torch.device("cpu")) else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ISA {torch.backends.cpu.get_cpu_capability()}, "
          f"fashion_mnist, ResNet-20, {args.rounds} rounds of {args.images} images per loop; loops: {', '.join(loops)}")
    for name in args.methods:
        speeds = {loop: [] for loop in loops}
        for r in range(args.rounds):
            for loop in (loops if r % 2 == 0 else loops[::-1]):
                speeds[loop].append(stage_speed(name, data, args.images, loop))
        plain = statistics.median(speeds["plain"])
        parts = [f"{name} {TIMED[name][2]}: plain (contiguous, fp32) {plain:.1f} images/s"]
        for loop in loops[1:]:
            ratios = sorted(h / p for h, p in zip(speeds[loop], speeds["plain"]))
            parts.append(f"{loop} {statistics.median(speeds[loop]):.1f} (x{statistics.median(ratios):.2f}, "
                         f"{ratios[0]:.2f} .. {ratios[-1]:.2f})")
        print("; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
