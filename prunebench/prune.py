"""Export a physically smaller network from static channel masks (real smaller convs, real latency)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .backbones import GatedResNet


def physically_pruned(net: GatedResNet, keep: dict[str, torch.Tensor]) -> GatedResNet:
    """A copy of `net` whose inner branch units keep only channels `keep[unit]` (index tensors), and
    whose pre-activation blocks read only the stream channels `keep['blocks.<i>.pre_norm']`.

    Only a unit whose output feeds the next unit of the same branch can shrink: the last unit of
    a branch writes the residual stream, whose width is not pruned (network slimming, Sec. 4); a
    pre-activation block instead selects the stream channels its first conv reads (its channel
    selection layer), keeping the indices: the one gather such a network needs.
    """
    pruned = copy.deepcopy(net)
    pruned.policy = None
    pruned.pruned = True
    for unit_name, idx in keep.items():
        block_name, _, local = unit_name.rpartition(".")
        block = pruned.get_submodule(block_name) if block_name else None
        idx = torch.as_tensor(idx, dtype=torch.long)
        if block is not None and unit_name == getattr(block, "pre_gate", None) and not block.removed:
            _check_kept(unit_name, idx)
            block.select = idx if block.select is None else block.select[idx]
            block.pre_norm = _slice_norm(block.pre_norm, idx)
            first = getattr(block, block.unit_names[0])
            first.conv = _slice_conv(first.conv, in_idx=idx)
            continue
        if block is None or local not in getattr(block, "unit_names", ())[:-1]:
            raise ValueError(f"{unit_name} is not an inner branch unit; only those can be pruned physically")
        _check_kept(unit_name, idx)
        unit = getattr(block, local)
        following = getattr(block, block.unit_names[block.unit_names.index(local) + 1])
        unit.conv = _slice_conv(unit.conv, out_idx=idx)
        if unit.norm is not None:
            unit.norm = _slice_norm(unit.norm, idx)
        following.conv = _slice_conv(following.conv, in_idx=idx)
    return pruned.train(net.training)  # the new BN layers take the network's mode


def _check_kept(unit_name, idx):
    if len(idx) == 0:
        raise ValueError(f"{unit_name} keeps no channel: bridge or remove its branch before exporting")


def _slice_conv(conv: nn.Conv2d, out_idx=None, in_idx=None) -> nn.Conv2d:
    w = conv.weight.detach()
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None).to(w.device, w.dtype)
    new.weight.data.copy_(w)
    if conv.bias is not None:
        new.bias.data.copy_(conv.bias.detach()[out_idx] if out_idx is not None else conv.bias.detach())
    return new


def _slice_norm(norm: nn.BatchNorm2d, idx) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), eps=norm.eps, momentum=norm.momentum, affine=norm.affine).to(norm.running_mean.device)
    for name in ("weight", "bias"):
        if getattr(norm, name) is not None:
            getattr(new, name).data.copy_(getattr(norm, name).detach()[idx])
    new.running_mean.copy_(norm.running_mean[idx])
    new.running_var.copy_(norm.running_var[idx])
    return new
