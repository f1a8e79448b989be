"""Common evaluation: per-sample records from the trace, a summary; latency with real skipping."""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .backbones import GatedResNet
from .data import Dataset, Normalizer, batch_indices
from .flops import Accountant, controller_macs
from .gates import UpfrontBlockGates
from .plain import plain_reference
from .run import RunContext

if TYPE_CHECKING:  # pandas is imported where records are made: training jobs start without it
    import pandas as pd


@dataclass
class EvalResult:
    records: pd.DataFrame   # one row per test sample
    summary: dict


@torch.no_grad()
def evaluate(net: GatedResNet, data: Dataset, run: RunContext, *, split: str = "test",
             batch_size: int = 256, accountant: Accountant | None = None) -> EvalResult:
    """Run the split, collect the trace, count MACs with the one accountant. Block gates decided up front
    (or none) run in skip mode, where a skipped block costs nothing (the conformance kit checks that skip
    and mask mode agree in logits and trace); every other policy in mask mode."""
    device = torch.device(run.device)
    net.to(device).eval()
    accountant = accountant or Accountant(net, (data.in_channels, *data.image_size))
    ctrl = controller_macs(net, (data.in_channels, *data.image_size))
    net.to(memory_format=torch.channels_last)
    normalize = Normalizer(data.mean, data.std, device, torch.channels_last)
    x_all, y_all = data.split(split)
    mode = "skip" if net.policy is None or isinstance(net.policy, UpfrontBlockGates) else "mask"
    preds, trace = [], None
    for idx in batch_indices(len(y_all), batch_size, shuffle=False):
        logits, t = net.run(normalize(x_all[idx]), mode)
        preds.append(logits.argmax(1).cpu())
        t = _to_cpu(t)
        trace = t if trace is None else trace.cat(t)
    pred = torch.cat(preds)
    backbone = accountant.backbone_macs(trace)
    import pandas as pd

    records = pd.DataFrame({
        "sample": range(len(y_all)),
        "label": y_all.numpy(),
        "prediction": pred.numpy(),
        "correct": (pred == y_all).numpy(),
        "backbone_macs": backbone.numpy(),
        "controller_macs": ctrl,
        "macs": backbone.numpy() + ctrl,
        "blocks_executed": trace.blocks_executed.numpy(),
    })
    for unit, active in trace.gated_active.items():
        records[f"channels:{unit}"] = active.numpy().astype("int32")
    summary = summarize(records, accountant.dense_macs, net.num_blocks)
    # Per gated layer: how many samples ran with each number of active channels (a collapsed policy shows
    # as one bar at the smallest width in every layer).
    summary["gate_histograms"] = {unit: {int(k): int(v) for k, v in zip(*np.unique(active.numpy(), return_counts=True))}
                                  for unit, active in trace.gated_active.items()}
    summary["gate_widths"] = {unit: int(net.unit(unit).out_channels) for unit in trace.gated_active}
    if getattr(net, "training_curves", None):  # per-step values a method recorded while it trained
        summary["training_curves"] = net.training_curves
    # Parameters of the network as evaluated (a physically pruned one is smaller; policies count) against the
    # dense network of the same spec: adaptive slimming's claim is about parameters.
    summary["params"] = sum(p.numel() for p in net.parameters())
    summary["params_frac"] = summary["params"] / sum(p.numel() for p in GatedResNet(**net.spec).parameters())
    return EvalResult(records, summary)


def summarize(records: pd.DataFrame, dense_macs: float, num_blocks: int) -> dict:
    macs = records["macs"]
    return {
        "n": int(len(records)),
        "accuracy": float(records["correct"].mean()),
        "macs_mean": float(macs.mean()),
        "macs_std": float(macs.std(ddof=0)),
        "macs_max": float(macs.max()),
        "macs_p05": float(macs.quantile(0.05)),
        "macs_p95": float(macs.quantile(0.95)),
        "macs_frac": float(macs.mean() / dense_macs),
        "backbone_macs_mean": float(records["backbone_macs"].mean()),
        "controller_macs": float(records["controller_macs"].iloc[0]) if len(records) else 0.0,
        "dense_macs": float(dense_macs),
        "blocks_mean": float(records["blocks_executed"].mean()),
        "blocks_max": int(records["blocks_executed"].max()),
        "num_blocks": int(num_blocks),
    }


def _to_cpu(trace):
    trace.active_in = {k: v.cpu() for k, v in trace.active_in.items()}
    trace.active_out = {k: v.cpu() for k, v in trace.active_out.items()}
    trace.gated_active = {k: v.cpu() for k, v in trace.gated_active.items()}
    trace.block_gates = trace.block_gates.cpu()
    return trace


@torch.no_grad()
def latency(net: GatedResNet, data: Dataset, run: RunContext, *, batch_sizes=(1, 64), warmup: int = 5,
            repeats: int | list[int] = 30) -> dict:
    """Median wall-clock time of skip-mode forwards on test images, beside the dense backbone's, with
    the interquartile range; `repeats`: one count, or one per batch size."""
    counts = list(repeats) if isinstance(repeats, (list, tuple)) else [repeats] * len(batch_sizes)
    device = torch.device(run.device)
    net.to(device, memory_format=torch.channels_last).eval()
    normalize = Normalizer(data.mean, data.std, device, torch.channels_last)
    x_test = data.test_x
    result = {"device": _device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "warmup": warmup, "repeats": counts, "batches": {}}
    policy = net.policy
    # The dense reference in the harness: the same network without its policy, or the unpruned one it
    # was cut from; and the honest one: that network as a plain module (prunebench.plain), no gate machinery.
    reference = net.dense_reference().to(device, memory_format=torch.channels_last).eval()
    plain = plain_reference(reference)
    def dense(x):  # the reference may be `net` itself: without its policy for this call only
        reference.policy = None
        try:
            return reference(x, mode="skip")
        finally:
            net.policy = policy

    forwards = {"model_ms": lambda x: net(x, mode="skip"), "dense_ms": dense, "plain_dense_ms": plain}
    for bs, count in zip(batch_sizes, counts):
        # Cycle through different test images: a dynamic net's cost depends on the image.
        inputs = [normalize(x_test[(torch.arange(bs) + r * bs) % len(x_test)]) for r in range(count)]
        row = _paired_median_ms(forwards, inputs, warmup, device)
        row["speedup"] = row["dense_ms"] / row["model_ms"]  # against the dense network in the harness
        row["speedup_plain"] = row["plain_dense_ms"] / row["model_ms"]  # against the plain dense network
        result["batches"][str(bs)] = row
    return result


def _paired_median_ms(forwards: dict, inputs, warmup: int, device) -> dict:
    """Median milliseconds of each forward over `inputs`, after `warmup` untimed calls each. The
    forwards take turns on every input (in reversed order every other input): a machine whose speed
    drifts shifts all of them alike, so their ratios hold (timed one after another, two smoke runs'
    dense times differed by a median 27 %)."""
    names = list(forwards)
    for r in range(warmup):
        for name in names:
            forwards[name](inputs[r % len(inputs)])
    times = {name: [] for name in names}
    for i, x in enumerate(inputs):
        for name in (names if i % 2 == 0 else names[::-1]):
            _sync(device)
            t0 = time.perf_counter()
            forwards[name](x)
            _sync(device)
            times[name].append((time.perf_counter() - t0) * 1000)
    row = {name: statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():  # the spread: interquartile range
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
        row[f"{name}_iqr"] = [q[0], q[2]]
    return row


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"
