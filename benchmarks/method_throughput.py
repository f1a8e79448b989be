"""Images/s of a method's own fine-tuning step as the harness runs it (channels_last, bf16 autocast
where `precision: auto` picks it) against the same step as a plain eager loop (contiguous, fp32).

Each round runs the method's real `train` with a short schedule: its other stages shrink to a few
batches, the timed stage (FBS at d = 0.5, DLP's joint fine-tuning) trains `--images`
images at the default config's batch size; the stage's images/s is read from `fit`'s log line.
Harness and plain take turns (ABBA), so the machine's drift shifts both alike.
Usage: python benchmarks/method_throughput.py [--methods fbs dlp] [--rounds 4] [--images 3840]
"""

import argparse
import logging
import re
import statistics

import torch

from prunebench.api import RunContext, get_method
from prunebench.backbones import build_backbone
from prunebench.data import load_dataset

# method -> (budget, its timed stage's hyperparameter, the name `fit` logs that stage under)
TIMED = {"fbs": (0.5, "finetune", "fbs-d0.5"), "dlp": (9, "finetune", "dlp-finetune-0")}


class StageSpeed(logging.Handler):
    """Keeps the images/s of the last epoch `fit` logged for one stage."""

    def __init__(self, stage: str):
        super().__init__()
        self.pattern, self.images_per_s = re.compile(rf"^{re.escape(stage)} epoch .*\((\d+) img/s\)$"), None

    def emit(self, record):
        match = self.pattern.match(record.getMessage())
        if match:
            self.images_per_s = float(match.group(1))


def stage_speed(name: str, data, images: int, harness: bool) -> float:
    method = get_method(name)
    budget, stage, logged = TIMED[name]
    hp = method.resolve_hp(method.quick_hp)
    for key, value in hp.items():  # every other training stage: a few batches
        if isinstance(value, dict) and value.get("epochs"):
            hp[key] = {**value, "epochs": 1, "epoch_images": 256}
    if "recalibrate_images" in hp:
        hp["recalibrate_images"] = 256
    hp[stage] = {**method.hyperparameters[stage], "epochs": 1, "epoch_images": images,
                 "channels_last": harness, "precision": "auto" if harness else "fp32"}
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
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--images", type=int, default=3840, help="images of the timed stage per round")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("fashion_mnist", val_size=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fashion_mnist, ResNet-20, "
          f"{args.rounds} rounds of {args.images} images per loop")
    for name in args.methods:
        speeds = {"plain": [], "harness": []}
        for r in range(args.rounds):
            for loop in (("plain", "harness") if r % 2 == 0 else ("harness", "plain")):
                speeds[loop].append(stage_speed(name, data, args.images, loop == "harness"))
        ratios = sorted(h / p for h, p in zip(speeds["harness"], speeds["plain"]))
        print(f"{name} {TIMED[name][2]}: plain (contiguous, fp32) {statistics.median(speeds['plain']):.1f} images/s, "
              f"harness {statistics.median(speeds['harness']):.1f}; ratio "
              f"{statistics.median(ratios):.2f} ({ratios[0]:.2f} .. {ratios[-1]:.2f} over rounds)")


if __name__ == "__main__":
    main()
