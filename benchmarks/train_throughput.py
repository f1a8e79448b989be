"""Images/s of the harness training loop vs a plain eager PyTorch loop: same model, data, batch, run.

The plain loop: contiguous tensors, eager mode, crop+flip on tensors, timed after 5 warm-up steps.
The harness loop: prunebench's `fit` with channels_last and torch.compile (what `compile: auto`
picks for a pretraining run of >= 2000 steps), two epochs over the same images: the second epoch
is the steady state; the first minus the second is the one-time compilation, also reported
amortised over the default config's pretraining.
Usage: python benchmarks/train_throughput.py [--steps 300] [--dataset fashion_mnist]
The last line is `ratio <harness steady-state / plain>`.
"""

import argparse
import time

import torch
import torch.nn.functional as F

from prunebench.api import RunContext
from prunebench.backbones import build_backbone
from prunebench.data import Dataset, Normalizer, augment, batch_indices, load_dataset
from prunebench.train import TrainSpec, fit


def plain_loop(data: Dataset, steps: int, batch_size: int) -> float:
    torch.manual_seed(0)
    net = build_backbone("resnet20", data.num_classes, data.in_channels)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    normalize = Normalizer(data.mean, data.std)
    gen = torch.Generator().manual_seed(0)
    batches = batch_indices(len(data.train_x), batch_size, shuffle=True, generator=gen, drop_last=True)
    seen, t0 = 0, time.perf_counter()
    for step, idx in zip(range(steps + 5), batches):
        if step == 5:
            seen, t0 = 0, time.perf_counter()
        x = normalize(augment(data.train_x[idx], pad=2, flip=True, generator=gen))
        loss = F.cross_entropy(net(x), data.train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(idx)
    return seen / (time.perf_counter() - t0)


def harness_loop(data: Dataset, steps: int, batch_size: int, compile_: str) -> tuple[float, float]:
    """(steady-state images/s, one-time compile seconds) of `fit` over two epochs of `steps` steps."""
    torch.manual_seed(0)
    net = build_backbone("resnet20", data.num_classes, data.in_channels)
    subset = Dataset(data.name, data.train_x[: steps * batch_size], data.train_y[: steps * batch_size],
                     data.val_x[:0], data.val_y[:0], data.test_x, data.test_y, data.classes, data.mean, data.std)
    spec = TrainSpec(epochs=2, batch_size=batch_size, lr=0.05, compile=compile_)
    history = fit(net, subset, spec, RunContext(seed=0))
    return history[1]["images_per_s"], history[0]["seconds"] - history[1]["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--compile", default="on", choices=["on", "off"],
                        help="on: what `auto` picks for a full pretraining run (>= 2000 steps)")
    args = parser.parse_args()
    data = load_dataset(args.dataset, val_size=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dataset} {tuple(data.train_x.shape[1:])}, "
          f"ResNet-20, batch {args.batch_size}, {args.steps} steps")
    plain = plain_loop(data, args.steps, args.batch_size)
    print(f"plain eager loop   {plain:8.1f} images/s")
    harness, compile_s = harness_loop(data, args.steps, args.batch_size, args.compile)
    print(f"harness loop       {harness:8.1f} images/s (compile={args.compile}, steady state)")
    images = 8 * len(data.train_x)  # the default config: 8 epochs
    amortised = images / (compile_s + images / harness)
    print(f"one-time compile   {compile_s:8.1f} s; amortised over 8 epochs of {args.dataset}: {amortised:.1f} images/s "
          f"({amortised / plain:.2f}x)")
    print(f"ratio {harness / plain:.2f}")


if __name__ == "__main__":
    main()
