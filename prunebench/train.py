"""The shared training loop: optimizer and schedule from config, atomic per-epoch checkpoints, resume."""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .api import RunContext, UserError
from .backbones import GatedResNet
from .data import Dataset, Normalizer, augment, batch_indices
from .gates import GatePolicy
from .io import save_torch

SCHEDULES = ("constant", "step", "cosine", "onecycle")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainSpec:
    """One training stage's settings (the `pretrain` section, or a method's fine-tuning stage)."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    milestones: list = field(default_factory=lambda: [0.5, 0.75])  # fractions of training (step)
    gamma: float = 0.1
    warmup_frac: float = 0.15                                       # onecycle ramp-up share
    augment_pad: int | None = None                                   # None: the data's (the run's augmentation)
    augment_flip: bool | None = None
    channels_last: bool = True
    compile: str = "auto"                                            # auto | on | off
    precision: str = "auto"                                          # auto | fp32 | bf16 (see autocast_dtype)
    epoch_images: int = 0                                            # images per epoch, a fresh random subset (0: all)

    def augmentation(self, data: Dataset) -> tuple[int, bool]:
        """(pad, flip) this stage trains with: its own where set, else the data's (the run's)."""
        return (data.augment_pad if self.augment_pad is None else self.augment_pad,
                data.augment_flip if self.augment_flip is None else self.augment_flip)

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "train") -> "TrainSpec":
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"unknown config key '{where}.{unknown[0]}'; accepted: {', '.join(sorted(names))}")
        spec = cls(**d)
        if spec.optimizer not in OPTIMIZERS:
            raise UserError(f"{where}.optimizer must be one of {OPTIMIZERS}, not {spec.optimizer!r}")
        if spec.schedule not in SCHEDULES:
            raise UserError(f"{where}.schedule must be one of {SCHEDULES}, not {spec.schedule!r}")
        if spec.precision not in PRECISIONS:
            raise UserError(f"{where}.precision must be one of {PRECISIONS}, not {spec.precision!r}")
        if str(spec.compile) not in ("auto", "on", "off"):
            raise UserError(f"{where}.compile must be auto, on or off, not {spec.compile!r}")
        if spec.epochs < 0 or spec.batch_size < 1 or spec.lr <= 0 or spec.epoch_images < 0:
            raise UserError(f"{where}: epochs must be >= 0, batch_size >= 1, lr > 0 and epoch_images >= 0")
        return spec


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_states() -> dict:
    """Every generator a method may draw from, so that a resumed run continues the same stream."""
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"].cpu())
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    if states["cuda"] is not None and torch.cuda.is_available():
        # a job resumed on a node with fewer visible GPUs restores the ones it has (a seed still fixes the run
        # where the GPU count is the same)
        for index, state in enumerate(states["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state.cpu(), index)


def _structure_key(net: nn.Module) -> str:
    """Hash of a model's parameter and buffer names and shapes."""
    shapes = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    return hashlib.sha256(repr(shapes).encode()).hexdigest()[:12]


def lr_factor(spec: TrainSpec, step: int, total: int) -> float:
    """Multiplier of the base learning rate at optimizer step `step` of `total`."""
    t = step / max(total, 1)
    if spec.schedule == "constant":
        return 1.0
    if spec.schedule == "step":
        return spec.gamma ** sum(t >= m for m in spec.milestones)
    if spec.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    # one-cycle: linear ramp from lr/25 to lr, then cosine down to ~0 (Smith & Topin 2019)
    w = spec.warmup_frac
    if t < w:
        return 0.04 + 0.96 * t / w
    return 0.5 * (1 + math.cos(math.pi * (t - w) / (1 - w)))


def schedule_travel(spec: TrainSpec, total_steps: int, steps: int | None = None, lr_scale: float = 1.0) -> float:
    """How far momentum SGD at `spec`'s scheduled rates (times `lr_scale`) moves a parameter under a constant unit
    gradient in the first `steps` of `total_steps` steps (all by default): the sum of lr_t / (1 - momentum)."""
    steps = total_steps if steps is None else steps
    return sum(lr_factor(spec, t, total_steps) for t in range(steps)) * spec.lr * lr_scale / (1 - spec.momentum)


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Default loss: plain cross-entropy; returns (loss, logits)."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


def make_optimizer(params, spec: TrainSpec) -> torch.optim.Optimizer:
    """Parameters, or parameter groups ({"params": [...], "lr": ...}), that require a gradient."""
    params = list(params)
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise UserError("nothing to train: no parameter requires a gradient")
    if spec.optimizer == "adam":
        return torch.optim.Adam(groups, lr=spec.lr, weight_decay=spec.weight_decay)
    if spec.optimizer == "rmsprop":  # FBS's official optimizer; torch's smoothing constant [choice]
        return torch.optim.RMSprop(groups, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov and spec.momentum > 0,
                           weight_decay=spec.weight_decay)


def _maybe_compile(net: nn.Module, spec: TrainSpec, total_steps: int, run: RunContext):
    """torch.compile pays for long dense jobs; gated forwards have data-dependent control flow."""
    wanted = spec.compile == "on" or (spec.compile == "auto" and total_steps >= 2000
                                      and getattr(net, "policy", None) is None)
    if not wanted:
        return net
    try:
        return torch.compile(net)
    except Exception as err:  # noqa: BLE001 - an eager fallback is always correct
        run.log.warning("torch.compile unavailable (%s); training eagerly", err)
        return net


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 natively (a CPU with AVX512-BF16 or AMX; a GPU of compute capability 8 or
    later, Ampere on), so autocast pays."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    # ATen's kernel level too: ATEN_CPU_CAPABILITY=avx2 (an AVX2-only CPU's code path) makes `auto` pick fp32
    return (torch.backends.cpu.get_cpu_capability().startswith("AVX512")
            and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()))


def autocast_dtype(spec: TrainSpec, device: torch.device) -> torch.dtype | None:
    """bf16 autocast for a training step (convs and linears in bf16; BN statistics, losses and
    weights in fp32), or None for fp32. `auto` picks bf16 where the hardware has bf16 dot products
    (a ResNet-20 step 1.6-1.7x on one core of an AVX512-BF16 CPU; emulated bf16 would be slower).
    The choice depends on the machine, not on a timing, so a seed still fixes a run. Evaluation,
    MAC counts and every method's search stay in fp32."""
    if spec.precision == "bf16" or (spec.precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def step_autocast(dtype: torch.dtype | None, device: torch.device):
    """The context a training step runs in: autocast to `dtype`, or nothing (fp32) for None."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def epoch_steps(spec: TrainSpec, n_train: int) -> int:
    """Optimizer steps in one epoch of `spec` on a training split of `n_train` images (whole batches)."""
    per_epoch = min(n_train, spec.epoch_images) if spec.epoch_images else n_train
    return per_epoch // spec.batch_size if per_epoch >= spec.batch_size else 1


def fit(net: nn.Module, data: Dataset, spec: TrainSpec, run: RunContext, *, name: str = "train",
        loss_fn: Callable = cross_entropy_loss, params=None, model_for_loss: nn.Module | None = None,
        on_epoch_start: Callable[[int], None] | None = None, before_validation: Callable[[], None] | None = None,
        metric: Callable | None = None, metric_name: str = "train", counts_as: str = "train") -> list[dict]:
    """Train `net` in place for spec.epochs; resumes from run's checkpoint `name` if one exists.

    loss_fn(model, x, y) -> (loss, logits) lets a method add its own terms; `params` restricts
    what is optimised (default: every parameter that requires a gradient); metric(logits, y) -> per-sample
    scores in [0, 1] is what the log reports as `metric_name` (default: training accuracy); `before_validation()`
    may set the gating the validation runs under (e.g. a budget drawn per batch). Per-step curves a
    loss_fn appends to `net.training_curves` are checkpointed with the model, so a resumed job keeps them.
    The images trained on are added to `run.images[counts_as]` ("policy": a separate controller's own stage).
    """
    set_seed(run.seed)
    device = torch.device(run.device)
    memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
    net.to(device=device, memory_format=memory_format)
    optimizer = make_optimizer(net.parameters() if params is None else params, spec)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    normalize = Normalizer(data.mean, data.std, device, memory_format)
    dtype = autocast_dtype(spec, device)
    n = len(data.train_x)
    steps_per_epoch = epoch_steps(spec, n)
    total_steps = steps_per_epoch * spec.epochs
    pad, flip = spec.augmentation(data)
    history, start_epoch = [], 0
    ckpt_path = run.checkpoint(name)
    settings = {"spec": {**asdict(spec), "augment_pad": pad, "augment_flip": flip}, "seed": run.seed,
                "data": data.name, "n_train": n, "job": run.identity,
                "structure": _structure_key(net), "autocast": str(dtype)}
    if ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state.get("settings") != settings:  # a checkpoint of other settings is not this job's
            run.log.warning("%s: ignoring %s, written with other settings", name, ckpt_path)
        else:
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            _set_rng_states(state["rng"])
            history, start_epoch = state["history"], state["epoch"] + 1
            if state.get("curves") is not None:
                net.training_curves = state["curves"]
            run.log.info("%s: resuming after epoch %d from %s", name, state["epoch"] + 1, ckpt_path)
    model = _maybe_compile(net, spec, total_steps - start_epoch * steps_per_epoch, run)
    model_for_loss = model if model_for_loss is None else model_for_loss

    def forward_loss(m, x, y):
        with step_autocast(dtype, device):
            return loss_fn(m, x, y)

    run.precision[name] = "fp32"
    if dtype is not None:
        run.precision[name] = "bf16" if dtype == torch.bfloat16 else str(dtype).removeprefix("torch.")
        run.log.info("%s: training steps in %s autocast", name, str(dtype).removeprefix("torch."))
    show = run.progress if run.progress is not None else sys.stderr.isatty()
    for epoch in range(start_epoch, spec.epochs):
        net.train()
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        # One generator per epoch, derived from the seed: a resumed run draws the same batches.
        gen = torch.Generator().manual_seed(run.seed * 1_000_003 + epoch)
        batches = itertools.islice(batch_indices(n, spec.batch_size, shuffle=True, generator=gen,
                                                 drop_last=n >= spec.batch_size), steps_per_epoch)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"{name} {epoch + 1}/{spec.epochs}", disable=not show,
                   file=sys.stderr, leave=False)
        loss_sum, correct, seen, t0 = 0.0, 0.0, 0, time.perf_counter()
        pending = StepTotals(epoch + 1, device)
        for i, idx in enumerate(bar):
            step = epoch * steps_per_epoch + i
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = base * lr_factor(spec, step, total_steps)
            x = augment(data.train_x[idx], pad=pad, flip=flip, generator=gen)
            x, y = normalize(x), data.train_y[idx].to(device)
            try:
                loss, logits = forward_loss(model_for_loss, x, y)
            except Exception as err:  # noqa: BLE001 - compilation fails at the first call
                if model is net:
                    raise
                run.log.warning("torch.compile failed (%s: %s); training eagerly", type(err).__name__, err)
                model_for_loss = net if model_for_loss is model else model_for_loss
                model = net
                loss, logits = forward_loss(model_for_loss, x, y)
            if metric is not None:
                hits = metric(logits.detach(), y).sum()
            elif logits is not None and y.dim() == 1:  # a method's loss may train on other targets
                hits = (logits.argmax(1) == y).sum()
            else:
                hits = None
            pending.add(i, loss.detach(), len(y), hits)
            if pending.due(i == steps_per_epoch - 1):
                loss_sum, correct = pending.settle(name, loss_sum, correct)  # raises Diverged at a non-finite loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
        loss_sum, correct = pending.settle(name, loss_sum, correct)
        seconds = time.perf_counter() - t0
        # Validated after the last epoch only, the one value anything reads (a pass over 5,000 images
        # each epoch cost ~15 % of a 20,000-image fine-tuning epoch on a 2-core CPU).
        last = epoch == spec.epochs - 1
        if last and before_validation is not None:
            before_validation()
        val_acc = accuracy(net, data.val_x, data.val_y, normalize) if last and len(data.val_x) else None  # JSON null
        history.append(dict(epoch=epoch + 1, train_loss=loss_sum / max(seen, 1), train_acc=correct / max(seen, 1),
                            val_acc=val_acc, lr=optimizer.param_groups[0]["lr"], seconds=seconds,
                            images=seen, images_per_s=seen / seconds))
        run.log.info("%s epoch %d/%d: loss %.4f %s %.4f%s (%.0f img/s)", name, epoch + 1, spec.epochs,
                     history[-1]["train_loss"], metric_name, history[-1]["train_acc"],
                     "" if val_acc is None else f" val {val_acc:.4f}", seen / seconds)
        if ckpt_path is not None:
            save_torch(dict(epoch=epoch, model=net.state_dict(), optimizer=optimizer.state_dict(),
                            rng=_rng_states(), history=history, settings=settings,
                            curves=getattr(net, "training_curves", None)), ckpt_path)
    net.eval()
    run.count_images({counts_as: sum(h["images"] for h in history)})
    if history and history[-1]["val_acc"] is not None:
        run.validation.append((name, history[-1]["val_acc"]))
    return history


class StepTotals:
    """An epoch's per-step losses and hits kept on the device and read back in one host sync every `every` steps
    (every step on a CPU, where reading is free: the loss is checked before the step that would apply it; every
    50 on a GPU, whose queue a read per step would drain). A non-finite loss raises Diverged at its own step."""

    def __init__(self, epoch: int, device: torch.device, every: int | None = None):
        self.epoch, self.every = epoch, every or (1 if device.type == "cpu" else 50)
        self.steps, self.losses, self.sizes, self.hits = [], [], [], []

    def add(self, step: int, loss: torch.Tensor, size: int, hits: torch.Tensor | None):
        self.steps.append(step)
        self.losses.append(loss.float())
        self.sizes.append(size)
        self.hits.append(hits)

    def due(self, last: bool) -> bool:
        return last or len(self.steps) >= self.every

    def settle(self, name: str, loss_sum: float, correct: float) -> tuple[float, float]:
        """The running sums with the pending steps added in step order (the arithmetic of one read per step)."""
        if not self.steps:
            return loss_sum, correct
        losses = torch.stack(self.losses).tolist()
        zero = self.losses[0].new_zeros((), dtype=torch.float64)
        hits = torch.stack([zero if h is None else h.double() for h in self.hits]).tolist()
        for step, loss, size, hit in zip(self.steps, losses, self.sizes, hits):
            if not math.isfinite(loss):
                raise Diverged(name, self.epoch, step, loss)
            loss_sum += loss * size
            correct += hit
        self.steps, self.losses, self.sizes, self.hits = [], [], [], []
        return loss_sum, correct


class Diverged(Exception):
    """A training stage's loss became NaN or infinite: the job records it as its result (status: diverged)
    instead of failing, so the rest of the DAG runs on and the tables show it."""

    def __init__(self, stage: str, epoch: int, step: int, loss: float):
        super().__init__(f"{stage}: loss became {loss} at epoch {epoch}, step {step}")
        self.record = {"stage": stage, "epoch": epoch, "step": step, "loss": str(loss)}


@torch.no_grad()
def accuracy(net: nn.Module, x_uint8: torch.Tensor, y: torch.Tensor, normalize: Normalizer,
             batch_size: int = 512) -> float:
    """Top-1 accuracy in eval mode (mask mode, the net's current policy)."""
    was_training = net.training
    net.eval()
    correct = 0
    for idx in batch_indices(len(y), batch_size, shuffle=False):
        correct += int((net(normalize(x_uint8[idx])).argmax(1).cpu() == y[idx]).sum())
    net.train(was_training)
    return correct / max(len(y), 1)


@torch.no_grad()
def mean_cross_entropy(net: nn.Module, x_uint8: torch.Tensor, y: torch.Tensor, normalize: Normalizer) -> float:
    """Mean cross-entropy of one batch in eval mode (mask mode, the net's current policy)."""
    was_training = net.training
    net.eval()
    ce = F.cross_entropy(net(normalize(x_uint8)), y.to(normalize.device)).item()
    net.train(was_training)
    return ce


@torch.no_grad()
def backbone_cross_entropy(net: GatedResNet, data: Dataset, seed: int, images: int = 2048,
                           policy: GatePolicy | None = None) -> float:
    """The unpruned network's mean cross-entropy on a seeded random sample of training images (eval mode, policy
    off; or under `policy`, on the same sample): the unit of the regularisers and penalties set relative to the
    loss, so one value transfers to another dataset (floored at 1e-3, so a memorised training set does not make
    the unit vanish)."""
    idx = torch.randint(len(data.train_x), (images,), generator=torch.Generator().manual_seed(seed * 1_000_003 + 41))
    saved, net.policy = net.policy, policy
    try:
        ce = mean_cross_entropy(net, data.train_x[idx], data.train_y[idx],
                                Normalizer(data.mean, data.std, next(net.parameters()).device))
    finally:
        net.policy = saved
    return max(ce, 1e-3)


@torch.no_grad()
def recalibrate_bn(net: GatedResNet, data: Dataset, images: int, batch_size: int = 256,
                   before_batch: Callable[[], None] | None = None, seed: int = 0) -> None:
    """Re-estimate the backbone's BN running statistics on a seeded random sample of `images` training images
    under the run's augmentation (the statistics the weights were trained with: on CIFAR-10's pad-4 crops,
    statistics of unaugmented images cost the dense ResNet-20 2.6 pt) with everything else in eval mode, so the
    statistics match the gates applied at inference; `before_batch()` may change the gating between batches
    (e.g. draw a budget). 0 images: nothing is re-estimated (a method's recalibrate_images off)."""
    if images <= 0:
        return
    norms = net.backbone_norms()
    device = next(net.parameters()).device
    normalize = Normalizer(data.mean, data.std, device)
    net.eval()
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
        m.train()
    try:
        sample, gen = data.sample(images, seed), torch.Generator().manual_seed(seed * 1_000_003 + 43)
        for idx in batch_indices(len(sample), batch_size, shuffle=False):
            if before_batch is not None:
                before_batch()
            net(normalize(data.augmented(data.train_x[sample[idx]], gen)))
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        net.eval()
