"""CIFAR-style ResNets with gate points: basic-block ResNet-(6n+2), pre-activation ResNet-(9n+2), and
the CIFAR ResNet-18 (four stages of two basic blocks, 3x3 stride-1 stem, no max-pool).

Conv units are named 'stem', 'blocks.<i>.conv<k>', 'blocks.<i>.shortcut' and the classifier 'fc':
those names key the gates, the trace and the accountant's cost table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .gates import (ConvUnit, GatePolicy, Trace, UpfrontBlockGates, add_rows_, count, global_pool, scatter, select_rows,
                    take, union_index)

SHORTCUTS = ("pad", "conv")  # pad: avg-pool stride 2 + zero channels (BlockDrop/DLP); conv: 1x1 conv + BN


_NO_ROWS = torch.zeros(0, dtype=torch.long)  # a block no row runs


def policy_call(hook, *args):
    """A policy hook outside autocast, on fp32 inputs: in a bf16 training step the policy decides (top-k,
    argmax, sampled actions) in the precision evaluation decides in, so training sees evaluation's gates."""
    x = next(a for a in args if isinstance(a, torch.Tensor))
    if not torch.is_autocast_enabled(x.device.type):
        return hook(*args)
    with torch.autocast(x.device.type, enabled=False):
        return hook(*(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args))


@dataclass
class _Pass:
    """State of one forward pass, shared by the blocks."""

    policy: GatePolicy | None
    skip: bool
    trace: Trace | None
    block_gates: list = field(default_factory=list)
    # Skip mode with block gates decided up front: block index -> (any row runs it, all rows do,
    # the gate is 0/1), read from the policy's (N, blocks) matrix before the first block.
    decided: dict | None = None

    def __post_init__(self):
        # Skip mode without a trace, channel gates or parallel gates: blocks take the lean path.
        policy = self.policy
        self.lean = self.skip and self.trace is None and (
            policy is None or not (policy.gated_units or policy.parallel))

    def decide_blocks(self, blocks) -> None:
        # One host sync for the whole pass; the flags in Python: at batch 1 the tensor reductions
        # cost more (measured: 50 us for ResNet-20's 9 blocks)
        columns = self.policy.keep.T.tolist()
        self.decided = {}
        for b in blocks:
            if not b.removed:
                column = columns[b.index]
                self.decided[b.index] = (any(column), all(column), all(g == 0 or g == 1 for g in column))

    def block_gate(self, index: int, x):
        """(gate, rows, hard): the block's (N,) gate (None: open for every row), in skip mode the rows
        that run its branch (None: all), and whether the gate is 0/1 (nothing to multiply then)."""
        if self.policy is None or not self.policy.gates_blocks:
            return None, None, False
        if self.decided is None:
            gate, hard = policy_call(self.policy.block_gate, index, global_pool(x)), False
            if not self.skip:
                return gate, None, hard
            rows = (gate != 0).nonzero().flatten()  # one host read (the row count comes with the indices)
            return gate, (None if len(rows) == len(gate) else rows), hard
        any_on, all_on, hard = self.decided[index]
        if all_on and hard:
            return None, None, False
        if not any_on and self.lean:  # the branch runs for no row, and nothing records the gate
            return None, _NO_ROWS, True
        gate = self.policy.block_gate(index, None)
        if all_on:
            return gate, None, hard
        return gate, ((gate != 0).nonzero().flatten() if any_on else _NO_ROWS), hard

    @property
    def parallel(self) -> bool:
        return self.policy is not None and self.policy.parallel

    def channel_gate(self, unit: str, pooled_input):
        if self.policy is None or unit not in self.policy.gated_units:
            return None
        return policy_call(self.policy.channel_gate, unit, pooled_input())

    def record_unit(self, unit_name: str, k: int, unit, in_mask, gate, run, n: int, device):
        """Record branch unit `k`: its input channels, and the outputs it computes (all of them in
        parallel mode, where the gate is computed beside the conv and the first conv always runs)."""
        if self.trace is None:
            return
        n_out = (count(gate.active, n, 0, device) if gate is not None and not self.parallel
                 else count(None, n, unit.out_channels, device))
        self.record(unit_name, count(in_mask, n, unit.conv.in_channels, device), n_out, gate, run,
                    counted_when_skipped=self.parallel and k == 0)

    def record(self, unit: str, n_in, n_out, gate, run, counted_when_skipped: bool = False):
        if self.trace is None:
            return
        if run is not None and not counted_when_skipped:
            n_in, n_out = n_in * run, n_out * run
        self.trace.add(unit, n_in, n_out)
        if gate is not None:
            passed = gate.active.sum(1).float()
            self.trace.gated_active[unit] = passed * run if run is not None else passed


class PadShortcut(nn.Module):
    """Parameter-free shortcut: average-pool by the stride, then zero channels up to the new width."""

    def __init__(self, stride: int, in_channels: int, out_channels: int):
        super().__init__()
        self.stride, self.in_channels, self.extra = stride, in_channels, out_channels - in_channels

    def forward(self, x):
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, ceil_mode=True)  # matches the strided conv on odd sizes
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x

    def mask(self, stream):
        """The padded channels are structurally zero."""
        if self.extra == 0:
            return stream
        if stream is None:
            stream = torch.ones(1, self.in_channels, dtype=torch.bool)
        return torch.cat([stream, stream.new_zeros(stream.shape[0], self.extra)], 1)


class ResidualBlock(nn.Module):
    """Optional pre-activation, a chain of conv units (the branch), a shortcut, an add."""

    def __init__(self, index: int, units: dict[str, ConvUnit], shortcut: nn.Module | None,
                 pre_norm: nn.BatchNorm2d | None, post_relu: bool):
        super().__init__()
        self.index, self.prefix = index, f"blocks.{index}."
        self.unit_names = list(units)
        for name, unit in units.items():
            self.add_module(name, unit)
        self.shortcut = shortcut
        self.pre_norm = pre_norm
        self.post_relu = post_relu
        # Stream channels the branch reads (network slimming's channel selection, kept by a
        # physically pruned pre-activation block); None: all of them.
        self.register_buffer("select", None)

    def __setstate__(self, state):
        super().__setstate__(state)
        self._buffers.setdefault("select", None)  # models saved before channel selection existed

    @property
    def pre_gate(self) -> str | None:
        """Name of the input-side gate point: the pre-activation BN's output, before the branch's
        first conv (pre-activation blocks only; the stream it reads is not pruned)."""
        return self.prefix + "pre_norm" if self.pre_norm is not None else None

    @property
    def removed(self) -> bool:
        """The branch is gone (e.g. layer pruning): the block is its shortcut alone."""
        return not self.unit_names

    def replace_units(self, old: list[str], new: dict[str, ConvUnit]) -> None:
        """Replace the consecutive branch units `old` by `new` (e.g. a 1x1 bridge; {} removes the branch)."""
        at = self.unit_names.index(old[0])
        if self.unit_names[at:at + len(old)] != old:
            raise ValueError(f"{old} are not consecutive units of block {self.index}")
        for name in old:
            delattr(self, name)
        for name, unit in new.items():
            self.add_module(name, unit)
        self.unit_names[at:at + len(old)] = list(new)
        if self.removed:
            self.pre_norm = self.select = None

    @property
    def out_channels(self) -> int:
        return getattr(self, self.unit_names[-1]).out_channels

    def forward(self, x, stream, ctx: _Pass):
        """One block; `stream` is the (N, C) mask of structurally non-zero input channels (None: all)."""
        if self.removed:
            return self._shortcut_only(x, stream, ctx)
        block_gate, rows, hard = ctx.block_gate(self.index, x)
        if ctx.lean:
            return self._lean_skip(x, ctx, block_gate, rows, hard), None
        run = None if block_gate is None else (block_gate != 0).float()
        if ctx.trace is not None:
            ctx.block_gates.append(block_gate.detach().float() if block_gate is not None
                                   else torch.ones(x.shape[0], device=x.device))
        shortcut_out, shortcut_mask = self._shortcut(x, stream, ctx, run)
        if ctx.skip:
            branch, rows, channels, branch_mask = self._branch_skip(x, stream, ctx, block_gate, run, rows, hard)
            out = _add_branch(shortcut_out, branch, rows, channels)
        else:
            branch, branch_mask = self._branch_mask(x, stream, ctx, run)
            if block_gate is not None:
                branch = branch * block_gate.view(-1, 1, 1, 1).to(branch.dtype)
            out = shortcut_out + branch
        if self.post_relu:
            out = out.relu_() if ctx.skip else F.relu(out)  # skip mode: out is this block's own tensor
        if ctx.trace is None and not ctx.skip:
            return out, None
        # The add is the union of what the branch produced and what the shortcut carried.
        if shortcut_mask is None or (branch_mask is None and run is None):
            return out, None
        n, c = out.shape[:2]
        branch_mask = torch.ones(n, c, dtype=torch.bool, device=out.device) if branch_mask is None else branch_mask
        if run is not None:
            branch_mask = branch_mask & (run[:, None] > 0)
        return out, branch_mask | shortcut_mask.to(out.device).expand(n, -1)

    def _lean_skip(self, x, ctx: _Pass, block_gate, rows, hard):
        """Skip mode without a trace or channel gates (latency with block gates, or none): the
        shortcut, plus the branch on the rows that run it; no channel bookkeeping. Channels known
        to be zero (after a padded shortcut) are computed as zeros, which changes no value. The add
        and the ReLU are in place, on the shortcut's output or the block input: no one else reads
        either once the branch has run (the block input is the previous layer's own output)."""
        sc = self.shortcut
        out = x if sc is None else sc(x) if isinstance(sc, PadShortcut) else sc.forward_sliced(x, None, None, None)
        if rows is None or len(rows):
            h, _ = self._branch_input(x if rows is None else select_rows(x, rows), None, ctx)
            units = self._modules  # not nn.Module.__getattr__: a microsecond per unit at batch 1
            for name in self.unit_names:
                h = units[name].forward_sliced(h, None, None, None)
            if not hard:
                h = _scale_rows(h, block_gate, rows)
            # in place, on the rows that ran only: no zero-filled full-batch copy of the branch
            out = out.add_(h) if rows is None else add_rows_(out, rows, h)
        return out.relu_() if self.post_relu else out

    def _shortcut_only(self, x, stream, ctx: _Pass):
        if ctx.trace is not None:
            ctx.block_gates.append(torch.zeros(x.shape[0], device=x.device))
        out, mask = self._shortcut(x, stream, ctx, None)
        return (F.relu(out) if self.post_relu else out), mask

    def _branch_input(self, x, stream, ctx: _Pass):
        """The first conv's input and its mask of non-zero channels: the block input, or in a
        pre-activation block ReLU(BN(x)) on the selected stream channels, gated on the input side
        (a pre-activation BN turns zero channels into non-zero ones: only its gate makes them zero)."""
        if self.pre_norm is None:
            return x, stream
        if self.select is not None:
            x = x.index_select(1, self.select)
        h = self.pre_norm(x)
        gate = ctx.channel_gate(self.pre_gate, lambda: global_pool(x))
        if gate is not None:
            h = gate.apply(h)
            if ctx.trace is not None:
                ctx.trace.gated_active[self.pre_gate] = gate.active.sum(1).float()
        return F.relu(h), (gate.active if gate is not None else None)

    def _shortcut(self, x, stream, ctx: _Pass, run):
        sc = self.shortcut
        if sc is None:
            return x, stream
        if isinstance(sc, PadShortcut):
            return sc(x), sc.mask(stream)
        n = x.shape[0]
        ctx.record(self.prefix + "shortcut", count(stream, n, sc.conv.in_channels, x.device),
                   count(None, n, sc.out_channels, x.device), None, None)
        if ctx.skip:
            idx = union_index(stream) if stream is not None else None
            return sc.forward_sliced(take(x, 1, idx), idx, None, None), None
        return sc(x), None

    def _branch_mask(self, x, stream, ctx: _Pass, run):
        h, in_mask = self._branch_input(x, stream, ctx)
        for k, name in enumerate(self.unit_names):
            unit, full = getattr(self, name), self.prefix + name
            # A row whose block is skipped shows the policy a zero input, exactly as in skip mode.
            hides_rows = run is not None and k >= (1 if ctx.parallel else 0)
            gate = ctx.channel_gate(full, lambda: global_pool(h) * run[:, None] if hides_rows else global_pool(h))
            ctx.record_unit(full, k, unit, in_mask, gate, run, h.shape[0], h.device)
            h = unit(h, gate)
            in_mask = gate.active if gate is not None else None
        return h, in_mask

    def _branch_skip(self, x, stream, ctx: _Pass, block_gate, run, rows, hard):
        """Run only the rows whose block gate is open and only the channels some row keeps."""
        n = x.shape[0]
        # LC-Net's parallel mode computes the first conv for every sample before the decision.
        select_after = 1 if ctx.parallel else 0
        h, in_mask = self._branch_input(x, stream, ctx)
        in_idx = union_index(in_mask) if in_mask is not None else None
        cur_rows = None
        h = take(h, 1, in_idx)
        for k, name in enumerate(self.unit_names):
            if k == select_after and rows is not None:
                if len(rows) == 0:
                    return None, None, None, self._no_rows_left(k, n, x, stream, ctx, run)
                cur_rows = rows
                h = select_rows(h, rows)
            unit, full = getattr(self, name), self.prefix + name
            width_in = unit.conv.in_channels
            gate = ctx.channel_gate(full, lambda: _scatter_pooled(h, n, width_in, cur_rows, in_idx))
            gate_rows = _rows(gate, cur_rows)
            ctx.record_unit(full, k, unit, in_mask, gate, run, n, x.device)
            if gate is None:
                out_idx = None
            elif ctx.parallel:  # computed in full, then the gated-off channels are dropped
                h = unit.forward_sliced(h, in_idx, None, gate_rows)
                out_idx = gate_rows.union()
                h = take(h, 1, out_idx)
                in_idx, in_mask = out_idx, gate.active
                continue
            else:
                out_idx = gate_rows.union()
            h = unit.forward_sliced(h, in_idx, out_idx, gate_rows)
            in_idx, in_mask = out_idx, (gate.active if gate is not None else None)
        if not hard:  # a 0/1 gate is 1 on the rows that ran
            h = _scale_rows(h, block_gate, rows)
        return h, rows, in_idx, in_mask

    def _no_rows_left(self, k, n, x, stream, ctx: _Pass, run):
        """Every row skips the branch: still ask the policy at each remaining gate point, so that it
        sees the same sequence of calls as in mask mode (stateful policies rely on it)."""
        for name in self.unit_names[k:]:
            unit, full = getattr(self, name), self.prefix + name
            gate = ctx.channel_gate(full, lambda: x.new_zeros(n, unit.conv.in_channels))
            zeros = torch.zeros(n, device=x.device)
            ctx.record(full, zeros, zeros, gate, run)
        return torch.zeros(n, self.out_channels, dtype=torch.bool, device=x.device)


def _add_branch(out, branch, rows, channels):
    """out + branch in place on out (skip mode is inference, and out, the shortcut's output or the
    block input, is read by no one after this block), where branch holds only `rows` and `channels`
    of out (None: all; branch None: nothing ran). The rows are added where they go, with no
    zero-filled full-batch copy."""
    if branch is None:
        return out
    if channels is not None:
        if rows is None and not isinstance(channels, int):
            return out.index_add_(1, channels, branch)
        branch = scatter(branch, channels, out.shape[1])
    return out.add_(branch) if rows is None else add_rows_(out, rows, branch)


def _scale_rows(h, block_gate, rows):
    """The branch output of `rows` (None: all) times their block gate (None: open)."""
    if block_gate is None:
        return h
    return h * (block_gate if rows is None else block_gate.index_select(0, rows)).view(-1, 1, 1, 1)


def _rows(gate, rows):
    return gate if gate is None or rows is None else gate.rows(rows)


def _scatter_pooled(h, n, width, rows, channels):
    """Pooled input at full batch and width: rows or channels that were not computed are zero."""
    pooled = h.mean((2, 3))
    if rows is None and channels is None:
        return pooled
    sub = scatter(pooled, channels, width)
    return pooled.new_zeros(n, width).index_copy(0, rows, sub) if rows is not None else sub


class GatedResNet(nn.Module):
    """A CIFAR ResNet whose forward asks `self.policy` for gates and can return a trace."""

    pruned: bool = False  # physically smaller than `spec` (channels sliced, branches bridged or removed)

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, *,
                 block: str = "basic", shortcut: str = "pad", width: int = 16, stages: int = 3):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, not {shortcut!r}")
        self.spec = dict(depth=depth, num_classes=num_classes, in_channels=in_channels,
                         block=block, shortcut=shortcut, width=width, stages=stages)
        widths = [width * 2 ** s for s in range(stages)]  # doubling at each stage, which halves the map
        if block == "basic":
            if (depth - 2) % (2 * stages):
                raise ValueError(f"a basic-block ResNet with {stages} stages has depth {2 * stages}n+2, not {depth}")
            per_stage, expansion = (depth - 2) // (2 * stages), 1
            self.stem = ConvUnit(_conv(in_channels, width, 3), nn.BatchNorm2d(width), relu=True)
        elif block == "bottleneck":
            if (depth - 2) % (3 * stages):
                raise ValueError(f"a bottleneck ResNet with {stages} stages has depth {3 * stages}n+2, not {depth}")
            per_stage, expansion = (depth - 2) // (3 * stages), 4
            self.stem = ConvUnit(_conv(in_channels, width, 3), None, relu=False)
        else:
            raise ValueError(f"block must be 'basic' or 'bottleneck', not {block!r}")
        blocks, c_in = [], width
        for stage, w in enumerate(widths):
            for j in range(per_stage):
                stride = 2 if stage > 0 and j == 0 else 1
                make = _basic_block if block == "basic" else _bottleneck_block
                blocks.append(make(len(blocks), c_in, w, stride, shortcut))
                c_in = w * expansion
        self.blocks = nn.ModuleList(blocks)
        self.head_norm = nn.BatchNorm2d(c_in) if block == "bottleneck" else None
        self.fc = nn.Linear(c_in, num_classes)
        self.policy: GatePolicy | None = None
        self._init_weights()

    def dense_reference(self) -> "GatedResNet":
        """The unpruned network of the same spec (fresh weights): the dense cost and speed a pruned
        network is measured against."""
        return GatedResNet(**self.spec).to(next(self.parameters()).device) if self.pruned else self

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def unit_names(self) -> list[str]:
        """Names of every conv unit, in execution order (the gate points)."""
        names = ["stem"]
        for b in self.blocks:
            names += [b.prefix + u for u in b.unit_names]
            if isinstance(b.shortcut, ConvUnit):
                names.append(b.prefix + "shortcut")
        return names

    def unit(self, name: str) -> ConvUnit:
        return self.get_submodule(name)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The network's own parameters, not its policy's (what a method's stage trains or freezes)."""
        return [p for name, p in self.named_parameters() if not name.startswith("policy.")]

    def backbone_norms(self) -> list[nn.BatchNorm2d]:
        """The network's own BN layers, not its policy's (whose statistics a method re-estimates or swaps)."""
        return [m for name, m in self.named_modules() if isinstance(m, nn.BatchNorm2d) and not name.startswith("policy.")]

    def forward(self, x: torch.Tensor, mode: str = "mask") -> torch.Tensor:
        return self._forward(x, mode, record=False)[0]

    def run(self, x: torch.Tensor, mode: str = "mask") -> tuple[torch.Tensor, Trace]:
        """Logits and the trace of what ran."""
        return self._forward(x, mode, record=True)

    @torch.no_grad()
    def logits_dropping_each_block(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(N, blocks, classes): for sample n and each block j it keeps (`keep`: (N, blocks) bool), the
        logits of the network that runs keep[n] without j; zeros where keep[n, j] is False. Skip mode.

        Each of these networks shares the blocks before j with the one of keep[n], so they branch off it
        at j: a row per (sample, dropped block) from there on, about half the blocks of one forward per
        candidate (DLP's greedy expert asks this K times per image)."""
        if self.training:
            raise RuntimeError("logits_dropping_each_block is for inference: call net.eval()")
        n, k = keep.shape
        keep = keep.to(x.device)
        h = self.stem.forward_sliced(x, None, None, None)
        image = torch.arange(n, device=x.device)  # the sample of each row: rows 0..n-1 drop nothing
        dropped = torch.full((n,), -1, device=x.device)
        gates, bare = UpfrontBlockGates(), _Pass(None, True, None)
        for i, block in enumerate(self.blocks):
            branching = keep[:, i].nonzero().flatten()  # the samples whose networks drop block i from here
            start = select_rows(h, branching)  # before the block: the lean path adds to h in place
            gates.keep = keep[image, i].float()[:, None].expand(-1, k)  # a row drops i from its own start
            ctx = _Pass(gates, True, None)
            ctx.decide_blocks([block])
            h, _ = block(h, None, ctx)
            if len(branching):
                h = torch.cat([h, block._shortcut_only(start, None, bare)[0]])
                image = torch.cat([image, branching])
                dropped = torch.cat([dropped, torch.full_like(branching, i)])
        logits = self._head(h)
        out = logits.new_zeros(n, k, logits.shape[1])
        out[image[n:], dropped[n:]] = logits[n:]
        return out

    def _head(self, h):
        if self.head_norm is not None:
            h = F.relu(self.head_norm(h))
        return self.fc(global_pool(h))

    def _forward(self, x, mode, record):
        if mode not in ("mask", "skip"):
            raise ValueError(f"mode must be 'mask' or 'skip', not {mode!r}")
        if mode == "skip" and (self.training or torch.is_grad_enabled()):
            raise RuntimeError("skip mode is for inference: call net.eval() and use torch.no_grad()")
        ctx = _Pass(self.policy, mode == "skip", Trace() if record else None)
        if self.policy is not None:
            policy_call(self.policy.begin, x)
            if ctx.skip and isinstance(self.policy, UpfrontBlockGates) and self.policy.block_gates_upfront:
                ctx.decide_blocks(self.blocks)
        n = x.shape[0]
        gate = ctx.channel_gate("stem", lambda: x.mean((2, 3)))
        stem = self.stem
        if record:
            ctx.record("stem", count(None, n, stem.conv.in_channels, x.device),
                       count(gate.active if gate is not None and not ctx.parallel else None, n,
                             stem.out_channels, x.device), gate, None)
        if ctx.skip:
            idx = gate.union() if gate is not None and not ctx.parallel else None
            h = scatter(stem.forward_sliced(x, None, idx, gate), idx, stem.out_channels)
        else:
            h = stem(x, gate)
        stream = gate.active if gate is not None else None
        for block in self.blocks:
            h, stream = block(h, stream, ctx)
        logits = self._head(h)
        if self.head_norm is not None:
            stream = None
        if record:
            ctx.record("fc", count(stream, n, self.fc.in_features, x.device),
                       count(None, n, self.fc.out_features, x.device), None, None)
            ctx.trace.block_gates = torch.stack(ctx.block_gates, 1)
        return logits, ctx.trace


def _conv(c_in, c_out, k, stride=1):
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)


def _make_shortcut(kind, c_in, c_out, stride):
    if stride == 1 and c_in == c_out:
        return None
    if kind == "pad":
        return PadShortcut(stride, c_in, c_out)
    return ConvUnit(_conv(c_in, c_out, 1, stride), nn.BatchNorm2d(c_out), relu=False)


def _basic_block(index, c_in, c_out, stride, shortcut):
    units = {"conv1": ConvUnit(_conv(c_in, c_out, 3, stride), nn.BatchNorm2d(c_out), relu=True),
             "conv2": ConvUnit(_conv(c_out, c_out, 3), nn.BatchNorm2d(c_out), relu=False)}
    return ResidualBlock(index, units, _make_shortcut(shortcut, c_in, c_out, stride), None, post_relu=True)


def _bottleneck_block(index, c_in, planes, stride, shortcut):
    # Pre-activation bottleneck (He et al. 2016; the network-slimming ResNet-164).
    c_out = planes * 4
    units = {"conv1": ConvUnit(_conv(c_in, planes, 1), nn.BatchNorm2d(planes), relu=True),
             "conv2": ConvUnit(_conv(planes, planes, 3, stride), nn.BatchNorm2d(planes), relu=True),
             "conv3": ConvUnit(_conv(planes, c_out, 1), None, relu=False)}
    return ResidualBlock(index, units, _make_shortcut(shortcut, c_in, c_out, stride),
                         nn.BatchNorm2d(c_in), post_relu=False)


BACKBONE_PATTERN = re.compile(r"^(resnet|preresnet)(\d+)$")


def build_backbone(name: str, num_classes: int, in_channels: int, *, shortcut: str = "pad",
                   width: int = 16) -> GatedResNet:
    """'resnet<6n+2>' (basic blocks, e.g. resnet20/56/110), 'preresnet<9n+2>' (e.g. preresnet164), or
    'resnet18' (four stages of two basic blocks: LC-Net's and SANP's, with width 64 and conv shortcuts)."""
    m = BACKBONE_PATTERN.match(name)
    if not m or (name != "resnet18" and (int(m.group(2)) - 2) % (6 if m.group(1) == "resnet" else 9)):
        raise ValueError(f"unknown backbone {name!r}; use resnet<6n+2> (resnet20, resnet56, resnet110), "
                         f"preresnet<9n+2> (preresnet164) or resnet18")
    block = "basic" if m.group(1) == "resnet" else "bottleneck"
    return GatedResNet(int(m.group(2)), num_classes, in_channels, block=block, shortcut=shortcut, width=width,
                       stages=4 if name == "resnet18" else 3)
