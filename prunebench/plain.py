"""The honest latency reference: a network as a plain static module, no gate machinery.

BN folded into the conv before it, channels_last, eager like the gated path: the speed a user gets
without any pruning tool (for a dense backbone), or from a physically pruned network deployed as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import GatedResNet
from .gates import ConvUnit


def _folded_conv(unit: ConvUnit) -> nn.Conv2d:
    """The unit's conv with its BN folded in (inference statistics)."""
    conv = unit.conv
    w, b = unit.folded_weights()
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, bias=True).to(w.device, w.dtype)
    out.weight.data.copy_(w)
    out.bias.data.copy_(b if b is not None else torch.zeros_like(out.bias))
    return out


class _PlainBlock(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.convs = nn.ModuleList(_folded_conv(getattr(block, u)) for u in block.unit_names)
        self.relus = [getattr(block, u).relu for u in block.unit_names]
        sc = block.shortcut
        self.shortcut = _folded_conv(sc) if isinstance(sc, ConvUnit) else sc
        self.pre_norm = block.pre_norm
        self.register_buffer("select", block.select)
        self.post_relu = block.post_relu

    def forward(self, x):
        out = x if self.shortcut is None else self.shortcut(x)
        if len(self.convs):
            h = x if self.select is None else x.index_select(1, self.select)
            if self.pre_norm is not None:
                h = F.relu(self.pre_norm(h))
            for conv, relu in zip(self.convs, self.relus):
                h = conv(h)
                if relu:
                    h = h.relu_()
            # in place on the branch's own output, as the skip path adds in place: a fair reference
            return h.add_(out).relu_() if self.post_relu else h.add_(out)
        return F.relu(out) if self.post_relu else out


class PlainResNet(nn.Module):
    """A GatedResNet's function (its policy ignored) as plain convs, for timing."""

    def __init__(self, net: GatedResNet):
        super().__init__()
        self.stem = _folded_conv(net.stem)
        self.stem_relu = net.stem.relu
        self.blocks = nn.Sequential(*(_PlainBlock(b) for b in net.blocks))
        self.head_norm = net.head_norm
        self.fc = net.fc

    def forward(self, x):
        h = self.stem(x)
        h = self.blocks(F.relu(h) if self.stem_relu else h)
        if self.head_norm is not None:
            h = F.relu(self.head_norm(h))
        return self.fc(h.mean((2, 3)))


def plain_reference(net: GatedResNet) -> nn.Module:
    """`net` as an eager, channels_last plain module in inference mode (eager like the gated skip
    mode, so the ratio of the two is the cost of the gate machinery and of what it cannot skip)."""
    return PlainResNet(net).eval().to(memory_format=torch.channels_last)
