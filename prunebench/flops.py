"""The one accountant: dense per-unit MACs from fvcore, per-sample MACs from a trace.

Units are MACs (one multiply-accumulate = 1), conv and linear only: fvcore's other operators
(batch_norm, pooling, elementwise) are excluded, as the papers do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from .backbones import GatedResNet
from .gates import Trace

# fvcore operator names of multiply-accumulate ops (aten::linear is 'linear', aten::addmm 'addmm').
MAC_OPERATORS = frozenset({"conv", "linear", "addmm", "matmul", "bmm", "mm", "einsum"})


class _LogitsOnly(nn.Module):
    """fvcore traces with torch.jit: give it a module returning a plain tensor."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        out = self.net(x)
        return out[0] if isinstance(out, tuple) else out


def macs_by_module(module: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """Conv + linear MACs of one forward of `example`, per module name (parents include children)."""
    from fvcore.nn import FlopCountAnalysis

    was_training = module.training
    module.eval()
    try:
        analysis = FlopCountAnalysis(_LogitsOnly(module), example)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
        with torch.no_grad():
            table = analysis.by_module_and_operator()
    finally:
        module.train(was_training)
    out = {}
    for name, ops in table.items():
        name = name[len("net."):] if name.startswith("net.") else ("" if name == "net" else name)
        out[name] = float(sum(v for op, v in ops.items() if op in MAC_OPERATORS))
    return out


@dataclass
class UnitCost:
    dense_macs: float
    in_channels: int
    out_channels: int


class Accountant:
    """Turns traces of one backbone into per-sample MACs; measures the dense table once."""

    def __init__(self, net: GatedResNet, image_shape: tuple[int, int, int]):
        self.image_shape = tuple(image_shape)
        policy, net.policy = net.policy, None  # the dense table is the backbone alone
        try:
            example = torch.zeros(1, *image_shape, device=next(net.parameters()).device)
            by_module = macs_by_module(net, example)
        finally:
            net.policy = policy
        self.units: dict[str, UnitCost] = {}
        for name in [*net.unit_names(), "fc"]:
            m = net.get_submodule(name)
            conv = m.conv if hasattr(m, "conv") else m
            c_in = conv.in_channels if hasattr(conv, "in_channels") else conv.in_features
            c_out = conv.out_channels if hasattr(conv, "out_channels") else conv.out_features
            self.units[name] = UnitCost(by_module[name], c_in, c_out)
        counted = sum(u.dense_macs for u in self.units.values())
        if abs(counted - by_module[""]) > 0.5:
            raise RuntimeError(f"cost table covers {counted:.0f} of {by_module['']:.0f} dense MACs: "
                               f"a conv or linear outside the gate points is not accounted for")
        # A physically pruned network is measured against the unpruned one it came from.
        self.dense_macs = macs_by_module(net.dense_reference(), example)[""] if net.pruned else by_module[""]

    def backbone_macs(self, trace: Trace) -> torch.Tensor:
        """Per-sample MACs: each unit counts dense x active_in/C_in x active_out/C_out (float64)."""
        total = None
        for name, cost in self.units.items():
            if name not in trace.active_in:
                raise KeyError(f"trace lacks unit {name!r}: it was produced by another backbone")
            frac = (trace.active_in[name].double() * trace.active_out[name].double()
                    / (cost.in_channels * cost.out_channels))
            term = cost.dense_macs * frac
            total = term if total is None else total + term
        return total


def controller_macs(net: GatedResNet, image_shape: tuple[int, int, int]) -> float:
    """Per-sample MACs of the policy (policy nets, gate FCs, ops written in its hooks): fvcore's
    total with the policy minus without it. Mask mode runs the whole backbone either way."""
    if net.policy is None:
        return 0.0
    if net.policy.known_macs is not None:
        return float(net.policy.known_macs)
    example = torch.zeros(1, *image_shape, device=next(net.parameters()).device)
    with_policy = macs_by_module(net, example)[""]
    policy, net.policy = net.policy, None
    try:
        without = macs_by_module(net, example)[""]
    finally:
        net.policy = policy
    return max(with_policy - without, 0.0)
