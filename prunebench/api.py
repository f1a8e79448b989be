"""The method interface, its run context, hyperparameter/budget validation and the entry-point registry."""

from __future__ import annotations

import copy
import functools
import math
import re
import sys
from importlib.metadata import entry_points
from typing import Any

import torch

from .backbones import GatedResNet
from .data import Dataset
from .errors import UserError
from .evaluate import EvalResult, evaluate
from .run import RunContext

__all__ = ["Method", "RunContext", "UserError", "copy_backbone", "get_method", "registered_methods"]

ENTRY_POINT_GROUP = "prunebench.methods"


class Method:
    """One pruning method behind the common interface; subclasses set the class attributes.

    knob: what a budget means ("blocks", "width", "flops_frac", ...); test_time_knob: one trained
    model serves a sweep of budgets; hyperparameters: accepted keys and their defaults.
    """

    name: str = ""
    knob: str = ""
    test_time_knob: bool = False
    hyperparameters: dict[str, Any] = {}
    # Per-backbone precomputations the workflow makes once (prepare): name -> the hyperparameters
    # it depends on (a change of any other hyperparameter does not recompute it).
    artifacts: dict[str, tuple[str, ...]] = {}
    # A method that runs another method's trained models in its own way (e.g. LC-Net's sequential
    # mode): the workflow derives its models from `derived_from`'s with `derive`, training nothing.
    derived_from: str | None = None
    # A method that loads another method's artifacts (made by that method's prepare, when the config runs it
    # and the hyperparameters the artifact depends on agree), e.g. an ablation started from the same warm-up
    shares_artifacts_of: str | None = None
    ours: bool = False  # a variant this harness adds (marked in the tables), not the paper's method
    static: bool = False  # every sample costs the same (static pruning; marked in the tables)
    # The budget that prunes nothing (the knob's identity: p = 0, width 1.0, ...; "all blocks" for a block
    # count): where the config runs it, the claims table checks it reproduces the dense network (a sanity row).
    no_pruning: float | str | None = None
    # Stated deviations from the paper (docs/choices.md), short; named in the `published` text of its claims' rows
    deviations: tuple[str, ...] = ()
    # The policy must learn to prune nothing there (RNP's p = 0), so check_no_pruning asks less than the whole cost
    no_pruning_learned: bool = False
    # The training budget (config key training_budget): the stages (hyperparameter keys) that train weights the
    # evaluated model carries, each with how often it runs (see training_stages), and each artifact's such stages.
    # A method that declares none trains as configured, and cannot take part while the config sets a budget.
    artifact_stages: dict[str, tuple[str, ...]] = {}
    # k for an entry named <method>_<k>x: the same method at k times the config's training budget
    budget_multiple: int = 1

    def training_stages(self, hp: dict, budget) -> dict[str, int] | None:
        """The stages of one model's own training (not its artifacts') -> how many times each runs at `budget`
        (None: the method's reference plan, which sets its artifacts' share of the budget); {}: it trains no
        weights; None: not declared."""
        return None

    def budget_range(self, backbone: GatedResNet) -> tuple[float, float]:
        """Inclusive range of valid budgets on this backbone."""
        raise NotImplementedError

    def train(self, backbone: GatedResNet, data: Dataset, budget, hp: dict, run: RunContext) -> GatedResNet:
        """Return a gated network (a copy: never mutate `backbone`)."""
        raise NotImplementedError

    def prepare(self, artifact: str, backbone: GatedResNet, data: Dataset, hp: dict, run: RunContext):
        """Compute one of `artifacts` (saved by the workflow and handed to train via run.artifacts)."""
        raise NotImplementedError

    def derive(self, net: GatedResNet, data: Dataset, hp: dict, run: RunContext) -> GatedResNet:
        """Turn a model trained by `derived_from` (at the same budget, same hyperparameters) into this method's."""
        raise NotImplementedError

    def configure(self, net: GatedResNet, budget) -> None:
        """Set an evaluation budget on a trained network (test-time knobs)."""

    def within_budget(self, records, budget, dense_macs: float):
        """Per test sample, whether it kept the budget this method promises (None: it promises none)."""
        return None

    def evaluate(self, net: GatedResNet, data: Dataset, budget, run: RunContext, **options) -> EvalResult:
        """Default: the common evaluation (per-sample records from the trace), with the share of samples within
        the promised budget (`budget_compliance`) where the method promises one."""
        self.configure(net, budget)
        result = evaluate(net, data, run, **options)
        within = self.within_budget(result.records, budget, result.summary["dense_macs"])
        if within is not None:
            result.summary["budget_compliance"] = float(within.mean())
        return result

    # --- validation shared by every method

    def check_budget(self, backbone: GatedResNet, budget) -> float:
        """The budget as a number in the knob's range; a block budget may be a fraction of the backbone's
        blocks, "70%" or "20/54", resolved here to at least that share (so one config fits every depth)."""
        low, high = self.budget_range(backbone)
        fraction = block_fraction(budget)
        if fraction is not None:
            if self.knob != "blocks":
                raise UserError(f"{self.name}: budget {budget!r} is a fraction of blocks, but its knob is "
                                f"'{self.knob}': give a number in [{low:g}, {high:g}]")
            budget = blocks_at_least(fraction, backbone.num_blocks)
        try:
            value = float(budget)
        except (TypeError, ValueError):
            raise UserError(f"{self.name}: budget {budget!r} is not a number; its knob '{self.knob}' "
                            f"accepts values in [{low:g}, {high:g}]") from None
        if not low <= value <= high:
            raise UserError(f"{self.name}: budget {value:g} is out of range; its knob '{self.knob}' "
                            f"accepts values in [{low:g}, {high:g}] on this backbone")
        if self.knob == "blocks":
            if value != int(value):
                raise UserError(f"{self.name}: budget {value:g} is not a whole number of blocks")
            return int(value)
        return value

    def resolve_hp(self, hp: dict | None) -> dict:
        """Defaults merged with `hp`; unknown keys and wrongly typed values are errors."""
        hp = dict(hp or {})
        unknown = sorted(set(hp) - set(self.hyperparameters))
        if unknown:
            accepted = ", ".join(sorted(self.hyperparameters)) or "none"
            raise UserError(f"{self.name}: unknown hyperparameter(s) {', '.join(unknown)}; "
                            f"accepted: {accepted}")
        out = copy.deepcopy(self.hyperparameters)
        for key, value in hp.items():
            default = self.hyperparameters[key]
            if isinstance(default, bool) != isinstance(value, bool) or (
                    isinstance(default, (int, float)) and not isinstance(value, (int, float))):
                raise UserError(f"{self.name}: hyperparameter {key}={value!r} should be like {default!r}")
            out[key] = {**default, **value} if isinstance(default, dict) and isinstance(value, dict) else value
        return out


_FRACTION = re.compile(r"^\s*(?:(\d+(?:\.\d*)?)\s*%|(\d+)\s*/\s*(\d+))\s*$")


def block_fraction(budget) -> float | None:
    """The share of blocks a budget string names ("70%" -> 0.7, "20/54" -> 0.37...); None for a number."""
    m = _FRACTION.match(budget) if isinstance(budget, str) else None
    if m is None:
        return None
    if m.group(1) is not None:
        return float(m.group(1)) / 100
    return int(m.group(2)) / max(int(m.group(3)), 1)


def blocks_at_least(fraction: float, num_blocks: int) -> int:
    """The fewest whole blocks that are at least `fraction` of `num_blocks` (70 % of 54 -> 38)."""
    return math.ceil(fraction * num_blocks - 1e-9)


def registered_methods() -> dict[str, Any]:
    """Entry points of every installed method, built-in or third-party, by name."""
    return dict(_entry_points(tuple(sys.path)))


@functools.lru_cache(maxsize=8)
def _entry_points(search_path: tuple) -> dict[str, Any]:
    # Scanning the installed distributions takes milliseconds and the workflow's parse asks ~500
    # times (measured: 2-3 s of every Snakemake start, twice per Slurm job); keyed by sys.path,
    # which is where a new plugin would appear.
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


_MULTIPLE = re.compile(r"^(?P<base>[A-Za-z0-9_]+?)_(?P<k>[1-9][0-9]*)x$")


def at_larger_budget(name: str) -> tuple[str, int] | None:
    """(method, k) for a name `<method>_<k>x` whose method is registered (None otherwise): no import of the method."""
    m = _MULTIPLE.match(name)
    return (m["base"], int(m["k"])) if m and name not in registered_methods() and m["base"] in registered_methods() else None


def get_method(name: str) -> Method:
    """The registered method `name`; `<method>_<k>x` is that method at k times the config's training budget."""
    eps = registered_methods()
    larger = at_larger_budget(name)
    method = get_method(larger[0]) if larger else None
    if method is not None and not method.derived_from:
        method.name, method.budget_multiple = name, larger[1]
        return method
    if name not in eps:
        raise UserError(f"unknown method {name!r}; registered methods: {', '.join(sorted(eps)) or 'none'} "
                        f"(a plugin registers under the entry-point group '{ENTRY_POINT_GROUP}'; <method>_<k>x runs a "
                        f"method at k times the training budget)")
    cls = eps[name].load()
    method = cls()
    if method.name != name:
        raise UserError(f"entry point {name!r} loads a method named {method.name!r}; they must agree")
    return method


def copy_backbone(backbone: GatedResNet, device: str | torch.device = "cpu") -> GatedResNet:
    """A private copy of the dense backbone for a method to wrap and train."""
    net = copy.deepcopy(backbone).to(device)
    net.policy = None
    return net
