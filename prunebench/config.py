"""Experiment config: defaults, validation (unknown keys are errors naming their path), provenance."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
import subprocess
from dataclasses import fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from .api import UserError, block_fraction, get_method, registered_methods
from .backbones import build_backbone
from .budget import check_declared
from .data import DATASET_NAMES
from .train import TrainSpec

TRAIN_SPEC_KEYS = frozenset(f.name for f in fields(TrainSpec))

DEFAULTS = {
    "data": {"name": "fashion_mnist", "path": None, "val_size": 5000, "download": True, "synthetic": {}},
    "backbone": {"names": ["resnet20"], "shortcut": "pad", "width": 16},
    "seeds": [0],
    # Extra seeds that train every method again at its replicated budget (`replicate_budgets`) from the first
    # seed's pretrained backbone and artifacts: the run's measure of training noise, which the claims' verdicts use.
    "replicate_seeds": [],
    # Images each trained model may train on after pretraining, its artifacts' stages included: every method's
    # stages are scaled to it (prunebench/budget.py); null: each trains as its hyperparameters say.
    "training_budget": None,
    # Where jobs run: auto (a free GPU if there is one, else the CPU), cpu, or cuda / cuda:N (a job refuses to start
    # without a GPU: the paper configs); a job's --device overrides it
    "device": "auto",
    "pretrain": {},
    "methods": {},
    "evaluate": {"batch_size": 256},
    "latency": {"batch_sizes": [1, 64], "warmup": 5, "repeats": 30, "exclusive": True},
}
METHOD_KEYS = {"train_budgets", "eval_budgets", "hp", "backbones"}


def load_config(path: str | Path | None) -> dict:
    """Read a YAML config, fill defaults and validate it; `None` gives the defaults."""
    raw = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise UserError(f"config file {path} does not exist") from None
        except yaml.YAMLError as err:
            raise UserError(f"config file {path} is not valid YAML: {err}") from None
    return validate(raw)


def _merge(defaults: dict, given: dict, where: str) -> dict:
    if not isinstance(given, dict):
        raise UserError(f"config key {where or 'top level'} must be a mapping, not {type(given).__name__}")
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in defaults:
            raise UserError(f"unknown config key '{path}'; accepted here: {', '.join(sorted(defaults))}")
        fixed_shape = isinstance(defaults[key], dict) and defaults[key] and key != "synthetic"
        out[key] = _merge(defaults[key], value, path) if fixed_shape else value
    return out


def validate(raw: dict) -> dict:
    """Defaults filled in; every key and value checked; method names checked against the registry."""
    cfg = _merge(DEFAULTS, copy.deepcopy(raw), "")
    if cfg["data"]["name"] not in DATASET_NAMES:
        raise UserError(f"config key 'data.name': unknown dataset {cfg['data']['name']!r}; "
                        f"choose one of {', '.join(DATASET_NAMES)}")
    TrainSpec.from_dict(cfg["pretrain"], "pretrain")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(cfg["device"])):
        raise UserError(f"config key 'device' must be auto, cpu, cuda or cuda:N, not {cfg['device']!r}")
    names = cfg["backbone"]["names"]
    if not isinstance(names, list) or not names:
        raise UserError("config key 'backbone.names' must be a non-empty list, e.g. [resnet20]")
    for key in ("shortcut", "width"):  # one value for all backbones, or one per backbone name
        value = cfg["backbone"][key]
        if isinstance(value, dict) and set(value) != set(names):
            raise UserError(f"config key 'backbone.{key}' maps backbone names to values: give one for each of "
                            f"{', '.join(names)} (it has {', '.join(map(str, value)) or 'none'}), or one value for all")
    try:
        backbones = [build_backbone(n, 2, 1, shortcut=_option(cfg, "shortcut", n), width=_option(cfg, "width", n))
                     for n in names]
    except (ValueError, TypeError) as err:
        raise UserError(f"config key 'backbone': {err}") from None
    seeds = cfg["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and x >= 0 for x in seeds):
        raise UserError("config key 'seeds' must be a non-empty list of non-negative integers")
    replicates = cfg["replicate_seeds"]
    if not isinstance(replicates, list) or not all(isinstance(x, int) and x >= 0 for x in replicates) \
            or set(replicates) & set(seeds):
        raise UserError("config key 'replicate_seeds' must be a list of non-negative integers not in 'seeds', "
                        f"not {replicates!r}")
    images = cfg["training_budget"]
    if images is not None and (isinstance(images, bool) or not isinstance(images, int) or images < 1):
        raise UserError(f"config key 'training_budget' must be a positive number of images (e.g. 55000: one epoch of "
                        f"Fashion-MNIST's training split) or null, not {images!r}")
    repeats, batch_sizes = cfg["latency"]["repeats"], cfg["latency"]["batch_sizes"]
    counts = repeats if isinstance(repeats, list) else [repeats] * len(batch_sizes)
    if len(counts) != len(batch_sizes) or not all(isinstance(r, int) and r >= 1 for r in counts):
        raise UserError(f"config key 'latency.repeats' must be a positive integer, or one per latency.batch_sizes "
                        f"(e.g. [30, 10] for [1, 64]), not {repeats!r}")
    for name, entry in (cfg["methods"] or {}).items():
        if name not in registered_methods():
            get_method(name)  # raises the error listing the registered methods
        entry = entry or {}
        unknown = set(entry) - METHOD_KEYS
        if unknown:
            raise UserError(f"unknown config key 'methods.{name}.{sorted(unknown)[0]}'; accepted: "
                            f"{', '.join(sorted(METHOD_KEYS))}")
        method = get_method(name)
        entry["hp"] = method.resolve_hp(entry.get("hp"))
        for key, value in entry["hp"].items():  # training stages (e.g. dlp.finetune) are checked here, not mid-run
            if isinstance(value, dict) and set(method.hyperparameters[key]) <= TRAIN_SPEC_KEYS:
                TrainSpec.from_dict(value, f"methods.{name}.hp.{key}")
        # the backbones it runs on: a subset of backbone.names (e.g. slimming on its paper's PreResNet-164)
        entry["backbones"] = entry.get("backbones") or list(names)
        if not isinstance(entry["backbones"], list) or not set(entry["backbones"]) <= set(names):
            raise UserError(f"config key 'methods.{name}.backbones' must be a list of backbone.names "
                            f"({', '.join(names)}), not {entry['backbones']!r}")
        own = [b for n, b in zip(names, backbones) if n in entry["backbones"]]
        # a derived method's models are its parent's: their train budgets are the parent's knob
        trainer = get_method(method.derived_from) if method.derived_from else method
        for key, checker in (("train_budgets", trainer), ("eval_budgets", method)):
            budgets = entry.get(key) or []
            if not isinstance(budgets, list):
                raise UserError(f"config key 'methods.{name}.{key}' must be a list")
            # valid on every backbone it runs on; a number means the same on each, a fraction of blocks
            # ("70%") is kept as written and resolved per backbone (method_budgets)
            checked = [[checker.check_budget(backbone, b) for b in budgets] for backbone in own][0]
            entry[key] = [b if block_fraction(b) is not None else c for b, c in zip(budgets, checked)]
        if entry["eval_budgets"] and not method.test_time_knob:
            raise UserError(f"config key 'methods.{name}.eval_budgets': {name}'s knob is set at train time; "
                            f"list its budgets under train_budgets")
        if images is not None and not method.derived_from:
            check_declared(method, entry["hp"])
        cfg["methods"][name] = entry
    for name, entry in cfg["methods"].items():
        _check_derived(name, entry, cfg["methods"], raw.get("methods", {}).get(name) or {})
    return cfg


def _check_derived(name: str, entry: dict, methods: dict, raw_entry: dict) -> None:
    """A derived method evaluates its parent's models: the parent runs too, at the same budgets and hp."""
    parent = get_method(name).derived_from
    if parent is None:
        return
    if parent not in methods:
        raise UserError(f"config key 'methods.{name}': {name} runs {parent}'s trained models; "
                        f"list {parent} under methods as well")
    if "hp" in raw_entry and entry["hp"] != methods[parent]["hp"]:  # (a resolved config repeats them)
        raise UserError(f"config key 'methods.{name}.hp': {name} takes its hyperparameters from "
                        f"methods.{parent}.hp; remove it")
    if not set(entry["backbones"]) <= set(methods[parent]["backbones"]):
        raise UserError(f"config key 'methods.{name}.backbones': {name} runs {parent}'s models, "
                        f"which run on {methods[parent]['backbones']} only")
    missing = [b for b in entry["train_budgets"] if b not in methods[parent]["train_budgets"]]
    if missing:
        raise UserError(f"config key 'methods.{name}.train_budgets': {missing} not in methods.{parent}.train_budgets "
                        f"({name} runs {parent}'s models)")
    entry["hp"] = methods[parent]["hp"]


def backbone_spec(cfg: dict, name: str | None = None) -> dict:
    """The backbone named `name` (default: the config's only one) with the shared options."""
    names = cfg["backbone"]["names"]
    if name is None:
        if len(names) > 1:
            raise UserError(f"the config lists several backbones ({', '.join(names)}): pick one with --backbone")
        name = names[0]
    if name not in names:
        raise UserError(f"backbone {name!r} is not in the config's backbone.names ({', '.join(names)})")
    return {"name": name, "shortcut": _option(cfg, "shortcut", name), "width": _option(cfg, "width", name)}


def _option(cfg: dict, key: str, name: str):
    """backbone.<key> for backbone `name`: the one value, or its entry in a per-backbone mapping."""
    value = cfg["backbone"][key]
    return value[name] if isinstance(value, dict) else value


def method_budgets(cfg: dict, method: str, backbone: str) -> tuple[list, list]:
    """A method's (train budgets, eval budgets) on one backbone: fractions of blocks resolved to blocks
    there, duplicates dropped; no eval budgets means each model at its train budget."""
    trainer = get_method(get_method(method).derived_from or method)
    net = _built(backbone, _option(cfg, "shortcut", backbone), _option(cfg, "width", backbone))
    entry = cfg["methods"][method]
    train = list(dict.fromkeys(trainer.check_budget(net, b) for b in entry["train_budgets"]))
    evals = list(dict.fromkeys(get_method(method).check_budget(net, b) for b in entry["eval_budgets"] or []))
    return train, evals


def replicate_budgets(cfg: dict, method: str, backbone: str) -> list:
    """The train budgets a replicate seed trains, from the first seed's backbone and artifacts: the middle one (the
    method's noise figure) and its no-pruning point where that is a train budget (its sanity row's cost is judged
    with the spread of its own training); none for dense (the shared backbone), a derived method (its models are
    its parent's, see `claims.Evidence.seed_variance`) or a <method>_<k>x entry (shown, not judged)."""
    train = method_budgets(cfg, method, backbone)[0]
    m = get_method(method)
    # a <method>_<k>x entry shows the method at a larger training budget; the claims judge the method's own rows
    if method == "dense" or m.derived_from or m.budget_multiple > 1 or not train:
        return []
    middle = sorted(train)[(len(train) - 1) // 2]
    return [middle] + ([m.no_pruning] if m.no_pruning in train and m.no_pruning != middle else [])


def backbone_seed(cfg: dict, seed: int) -> int:
    """The seed whose backbone and artifacts a run starts from: its own, or the first seed's for a replicate."""
    return cfg["seeds"][0] if seed in cfg["replicate_seeds"] else seed


@functools.lru_cache(maxsize=None)
def _built(name: str, shortcut: str, width: int):
    return build_backbone(name, 2, 1, shortcut=shortcut, width=width)


def config_hash(cfg: dict) -> str:
    """Short stable hash of (part of) a config: what a result depends on."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]


def provenance(cfg: dict, seed: int) -> dict:
    """Where a result came from: config hash, seed, package versions, git commit."""
    versions = {}
    for pkg in ("prunebench", "torch", "fvcore", "numpy", "pandas"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"config_hash": config_hash(cfg), "seed": seed, "versions": versions, "git_commit": commit}
