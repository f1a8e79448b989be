"""Gate and trace types, and how a conv unit applies channel gates in mask and skip mode.

Every method is expressed as gates on one backbone (DESIGN.md): a block gate per residual block
and sample, and a channel gate per gated conv, sample and output channel. The backbone asks a
`GatePolicy` for gates at each gate point and records in a `Trace` what actually ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ChannelGate:
    """Per-sample channel gate of one conv unit, applied after its norm and before its activation.

    out = act(scale * norm(conv(x)) + shift); an inactive channel is not computed, so its scale and
    shift must be 0 there (FBS puts its masked beta here, SANP its signed saliency). Active means
    scale != 0 unless `mask` says otherwise (an FBS winner may have a zero saliency).
    """

    scale: torch.Tensor                   # (N, C_out)
    shift: torch.Tensor | None = None     # (N, C_out) or None
    mask: torch.Tensor | None = None      # (N, C_out) bool, or None: scale != 0
    prefix: torch.Tensor | None = None    # (N,) int: the active channels are the first `prefix` (RNP)

    def apply(self, h: torch.Tensor) -> torch.Tensor:
        """scale * h + shift per sample and channel, in h's precision (a bf16 step's gates are fp32)."""
        h = h * self.scale[:, :, None, None].to(h.dtype)
        if self.shift is None:
            return h
        # the shift expanded to h's layout first: a broadcast add onto a channels_last bf16 map of 16
        # channels takes a slow path (128x16x28x28: 3.9 ms, against 0.8 with the expanded copy)
        return h + self.shift[:, :, None, None].to(h.dtype).expand(h.shape).contiguous(memory_format=_layout(h))

    @property
    def active(self) -> torch.Tensor:
        return self.scale != 0 if self.mask is None else self.mask

    def rows(self, rows: torch.Tensor) -> "ChannelGate":
        """The gate of a subset of the batch."""
        pick = lambda t: t.index_select(0, rows) if t is not None else None  # noqa: E731
        return ChannelGate(pick(self.scale), pick(self.shift), pick(self.mask), pick(self.prefix))

    def union(self) -> int | torch.Tensor | None:
        """The channels any sample keeps: a prefix length (weight slices are views) when the gate
        says its kept sets are prefixes, else the union of the masks (see union_index)."""
        if self.prefix is None:
            return union_index(self.active)
        n = int(self.prefix.max())
        return None if n >= self.scale.shape[1] else max(n, 1)


class GatePolicy(nn.Module):
    """Decides the gates of one forward pass; the default opens everything (the dense network).

    A subclass declares which gate points it drives (`gates_blocks`, `gated_units`) and overrides
    the matching hooks. Hooks see the global-average-pooled input of what they gate: every method
    in scope decides from it (FBS, LC-Net, SANP, RNP) or from the image seen in `begin` (BlockDrop,
    DLP). `parallel` marks gates computed beside the conv they gate (LC-Net's parallel mode): that
    conv, and a block's first conv, then run in full and only what follows is saved.
    """

    gates_blocks: bool = False
    gated_units: frozenset[str] = frozenset()
    parallel: bool = False
    known_macs: float | None = None  # set when the policy's cost is known without fvcore (a lookup: 0)

    def begin(self, x: torch.Tensor) -> None:
        """See the network input once, before the first gate point."""

    def block_gate(self, index: int, pooled: torch.Tensor | None) -> torch.Tensor:
        """(N,) gate in [0, 1] for residual block `index`; 0 skips its branch."""
        raise NotImplementedError

    def channel_gate(self, unit: str, pooled: torch.Tensor) -> ChannelGate:
        """Channel gate for conv unit `unit` (e.g. 'blocks.3.conv1') from its pooled input."""
        raise NotImplementedError


class UpfrontBlockGates(GatePolicy):
    """Block gates decided from the input in `begin` (BlockDrop, DLP, random drop): `keep` holds the
    (N, blocks) gates of the whole pass, column k for block k (block_gate ignores `pooled`). Skip mode
    reads them all before the first block, with one host sync (unless `block_gates_upfront` is off)."""

    gates_blocks = True
    block_gates_upfront = True
    keep: torch.Tensor

    def block_gate(self, index, pooled):
        return self.keep[:, index]


class StaticChannelPolicy(GatePolicy):
    """Fixed channel masks, the same for every sample (static pruning expressed as gates; a mask
    may be all zeros: that unit computes nothing)."""

    known_macs = 0.0  # a lookup

    def __init__(self, masks: dict[str, torch.Tensor]):
        super().__init__()
        self.gated_units = frozenset(masks)
        self.names = {unit: f"mask{i}" for i, unit in enumerate(sorted(masks))}
        for unit, mask in masks.items():
            self.register_buffer(self.names[unit], mask.float())

    def channel_gate(self, unit, pooled):
        mask = getattr(self, self.names[unit])
        return ChannelGate(mask.expand(pooled.shape[0], -1))


@dataclass
class Trace:
    """What ran in one forward, per sample: the accountant's only input."""

    active_in: dict[str, torch.Tensor] = field(default_factory=dict)   # unit -> (N,) input channels used
    active_out: dict[str, torch.Tensor] = field(default_factory=dict)  # unit -> (N,) output channels computed
    gated_active: dict[str, torch.Tensor] = field(default_factory=dict)  # gated unit -> (N,) channels passed on
    block_gates: torch.Tensor | None = None                            # (N, K) gate values, 0 = skipped

    def add(self, unit: str, n_in: torch.Tensor, n_out: torch.Tensor) -> None:
        self.active_in[unit] = n_in.float()
        self.active_out[unit] = n_out.float()

    @property
    def blocks_executed(self) -> torch.Tensor:
        return (self.block_gates != 0).sum(1)

    def cat(self, other: "Trace") -> "Trace":
        """Concatenate along the batch (for evaluating a dataset in batches)."""
        join = lambda a, b: {k: torch.cat([a[k], b[k]]) for k in a}  # noqa: E731
        return Trace(join(self.active_in, other.active_in), join(self.active_out, other.active_out),
                     join(self.gated_active, other.gated_active),
                     torch.cat([self.block_gates, other.block_gates]))


class ConvUnit(nn.Module):
    """conv -> optional norm -> channel gate point -> optional ReLU."""

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d | None, relu: bool):
        super().__init__()
        self.conv, self.norm, self.relu = conv, norm, relu

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def train(self, mode: bool = True):
        self.__dict__.pop("_fold_cache", None)
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        # .to(device, dtype or memory format) swaps the tensors' storage without a version bump
        self.__dict__.pop("_fold_cache", None)
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_fold_cache", None)
        return state

    def forward(self, x: torch.Tensor, gate: ChannelGate | None = None) -> torch.Tensor:
        """Mask mode: compute every channel, then multiply by the gate (differentiable)."""
        h = self.conv(x)
        if self.norm is not None:
            h = self.norm(h)
        if gate is not None:
            h = gate.apply(h)
        return F.relu(h) if self.relu else h

    def forward_sliced(self, x: torch.Tensor, in_idx: torch.Tensor | None, out_idx: torch.Tensor | None,
                       gate: ChannelGate | None) -> torch.Tensor:
        """Skip mode: x holds only channels `in_idx`; compute only output channels `out_idx`.

        Inference only: BN is folded into the sliced conv, and the folded slices are cached, so a
        static mask costs one conv per unit, like a physically smaller network.
        """
        weight, bias, geometry = self._folded(in_idx, out_idx)
        h = F.conv2d(x, weight, bias, *geometry)
        if gate is not None:
            scale, shift = take(gate.scale, 1, out_idx), take(gate.shift, 1, out_idx)
            h = h * scale[:, :, None, None]
            if shift is not None:
                h = h + shift[:, :, None, None]
        # h is this call's own tensor: the activation in place (measured: 4 us of 56 per conv at batch 1)
        return h.relu_() if self.relu else h

    @torch.no_grad()
    def folded_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The conv's weight and bias with the norm folded in (inference statistics; a norm without
        affine parameters, as FBS leaves it, folds too); detached."""
        weight = self.conv.weight.detach()
        bias = self.conv.bias.detach() if self.conv.bias is not None else None
        if self.norm is None:
            return weight, bias
        n = self.norm
        mult = torch.rsqrt(n.running_var + n.eps)
        if n.weight is not None:
            mult = n.weight.detach() * mult
        bias = (n.bias.detach() if n.bias is not None else 0) + ((bias if bias is not None else 0) - n.running_mean) * mult
        return weight * mult.view(-1, 1, 1, 1), bias

    def _folded(self, in_idx, out_idx):
        """(weight, bias, (stride, padding, dilation)) of the folded conv restricted to the channels."""
        # Per conv call in skip mode: the tensors through the modules' dicts, not nn.Module.__getattr__
        # (measured: the key went from 17 to 3.5 us). .to(device or dtype) changes data_ptr.
        conv, norm = self._modules["conv"], self._modules.get("norm")  # a None norm is a plain attribute
        params = conv._parameters
        tensors = (params["weight"], params["bias"]) + (
            (norm._parameters["weight"], norm._parameters["bias"], norm._buffers["running_mean"],
             norm._buffers["running_var"]) if norm is not None else ())
        # _version changes on every in-place update (optimizer steps, load_state_dict); id() on replacement.
        # Cleared by train()/eval() and by .to() (_apply), never copied or pickled (see below), so
        # in-place edits through .data (which bump no version) are picked up at the next eval().
        key = (_index_key(in_idx), _index_key(out_idx), tuple([(id(t), t._version) for t in tensors if t is not None]))
        cache = self.__dict__.setdefault("_fold_cache", {})
        if key not in cache:
            # a slice of the cached full fold: a new channel set costs a gather, not a fold
            weight, bias = self.folded_weights() if in_idx is None and out_idx is None else self._folded(None, None)[:2]
            weight, bias = take(take(weight, 0, out_idx), 1, in_idx), take(bias, 0, out_idx)
            if len(cache) >= 64:  # dynamic gates make many keys: keep the cache bounded
                cache.pop(next(iter(cache)))
            # channels_last: oneDNN's fast path on CPU (several times faster at these sizes)
            cache[key] = (weight.contiguous(memory_format=torch.channels_last), bias,
                          (conv.stride, conv.padding, conv.dilation))
        return cache[key]


def _index_key(idx):
    if idx is None or isinstance(idx, int):
        return idx
    return idx.cpu().numpy().tobytes()


# A set of channels in skip mode: None (all of them), an int n (the prefix 0..n-1) or a LongTensor of indices.
def take(t: torch.Tensor | None, dim: int, idx) -> torch.Tensor | None:
    """`t` restricted to the channels `idx` along `dim`: a view for a prefix, a gather for indices."""
    if t is None or idx is None:
        return t
    return t.narrow(dim, 0, idx) if isinstance(idx, int) else t.index_select(dim, idx)


def scatter(part: torch.Tensor, idx, width: int) -> torch.Tensor:
    """`part` (channels `idx` along dim 1) placed in zeros of `width` channels."""
    if idx is None:
        return part
    if isinstance(idx, int):
        return F.pad(part, (0, 0) * (part.dim() - 2) + (0, width - idx))
    return part.new_zeros(part.shape[0], width, *part.shape[2:]).index_copy_(1, idx, part)


def _channels_last(t: torch.Tensor) -> bool:
    """Whether t is a 4-D tensor stored channels_last (and not also contiguous)."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _nhwc(t: torch.Tensor) -> torch.Tensor | None:
    """The NHWC view of a channels_last 4-D tensor (None for any other layout)."""
    return t.permute(0, 2, 3, 1) if _channels_last(t) else None


# Rows of a channels_last batch through its NHWC view, where each row is one contiguous run: measured
# 9x faster at 256x16x28x28 than along dim 0 of the NCHW view, whose index_select also loses the layout.
def select_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x[rows] along the batch dimension, keeping x's memory layout."""
    view = _nhwc(x)
    return x.index_select(0, rows) if view is None else view.index_select(0, rows).permute(0, 3, 1, 2)


def add_rows_(out: torch.Tensor, rows: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    """out[rows] += part, in place."""
    view, part_view = _nhwc(out), _nhwc(part)
    if view is None or part_view is None:
        return out.index_add_(0, rows, part)
    view.index_add_(0, rows, part_view)
    return out


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if _channels_last(x) else torch.contiguous_format


class _GlobalAvgPool(torch.autograd.Function):
    """See global_pool."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape, ctx.layout = x.shape, _layout(x)
        # mean() itself, and below its own gradient's values: a training run is the same to the bit as
        # with x.mean((2, 3)) (a sum then a divide rounds differently in bf16, which flipped SANP's static
        # ablation, on the edge of diverging at the default config, into a NaN loss)
        return x.mean((2, 3))

    @staticmethod
    def backward(ctx, grad):
        n, c, h, w = ctx.shape
        return (grad / (h * w))[:, :, None, None].expand(n, c, h, w).contiguous(memory_format=ctx.layout)


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """x.mean((2, 3)) whose gradient has x's memory format. Autograd adds it to the gradient x gets from
    the conv that also reads x; mean's own gradient is contiguous, and a channels_last + contiguous add
    is 4-19x slower than two channels_last ones (bf16, one thread, 128x16x28x28: 7.3 vs 0.4 ms)."""
    return _GlobalAvgPool.apply(x) if x.requires_grad else x.mean((2, 3))


def module_key(unit: str) -> str:
    """A unit name as a ModuleDict key (keys cannot contain dots), for policies with a module per gated unit."""
    return unit.replace(".", "_")


def splitmix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on int64 tensors (wrapping arithmetic; logical shifts by masking)."""
    z = z * -7046029254386353131  # 0x9E3779B97F4A7C15, the golden-ratio increment
    z = (z ^ ((z >> 30) & ((1 << 34) - 1))) * -4658895280553007687  # 0xBF58476D1CE4E5B9
    z = (z ^ ((z >> 27) & ((1 << 37) - 1))) * -7723592293110705685  # 0x94D049BB133111EB
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def content_key(x: torch.Tensor) -> torch.Tensor:
    """A 64-bit hash of each sample's values (to 1e-3): the same image gets the same key in any
    batch and mode, so policies can draw per-image randomness or look up per-image data."""
    values = x.detach().flatten(1).mul(1e3).round().to(torch.int64).cpu()
    weights = splitmix64(torch.arange(1, values.shape[1] + 1, dtype=torch.int64))
    return splitmix64((values * weights).sum(1))


def random_scores(x: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """(N, count) int64 pseudo-random scores per image: a hash of its content and the seed, so the same
    image draws the same scores in any batch, mode and run, and different images draw independently."""
    keys = (content_key(x) + seed)[:, None] * 1_000_033 + torch.arange(count)
    return splitmix64(keys)


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C) bool mask of each row's k highest scores; ties go to the lower index (exactly k per row)."""
    order = torch.sort(scores.detach(), dim=1, descending=True, stable=True).indices[:, :k]
    # scatter a float, then compare: torch.jit (fvcore's tracer) has no bool-valued scatter_
    return torch.zeros_like(scores, dtype=torch.float32).scatter_(1, order, 1.0) > 0


def union_index(active: torch.Tensor) -> int | torch.Tensor | None:
    """Channels active for any sample of a (N, C) mask; None when all are (no slicing needed), a
    prefix length when they are the first ones (slices are then views: e.g. a union of prefixes)."""
    any_active = active.any(0)
    # one host read for the count and the prefix length (on a GPU each read waits for the queue)
    count, prefix = torch.stack([any_active.sum(), any_active.int().cumprod(0).sum()]).tolist()
    if count == len(any_active):
        return None
    # A unit no sample keeps still computes one (gated-to-zero) channel: convs need >= 1 channel.
    if count == prefix:
        return max(count, 1)
    return any_active.nonzero().flatten()


def count(mask: torch.Tensor | None, n: int, width: int, device) -> torch.Tensor:
    """Per-sample number of active channels of a (N, C) mask; None means all `width` are."""
    if mask is None:
        return torch.full((n,), float(width), device=device)
    return mask.sum(1).float()
