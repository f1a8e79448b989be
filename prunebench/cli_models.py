"""The verbs that load torch: pretraining, a method's training, derivation and preparation, evaluation
and latency (`prunebench.cli` imports this module only for them)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch

from .api import RunContext, get_method, registered_methods
from .budget import images_for, matched_hp, stage_images
from .backbones import build_backbone
from .config import backbone_spec, config_hash, load_config, provenance
from .data import Normalizer, load_dataset
from .errors import UserError
from .io import save_torch, write_json, write_parquet
from .layout import budget_file
from .train import Diverged, TrainSpec, accuracy, fit, set_seed


def _dataset(cfg):
    """The config's dataset, carrying the run's augmentation (the pretrain section's) for every stage."""
    d = cfg["data"]
    data = load_dataset(d["name"], d["path"], val_size=d["val_size"], download=d["download"], **d["synthetic"])
    pad, flip = TrainSpec.from_dict(cfg["pretrain"], "pretrain").augmentation(data)
    return dataclasses.replace(data, augment_pad=pad, augment_flip=flip)


def _run_context(args, cfg, out: Path, **identity) -> RunContext:
    """Checkpoints go beside the output; `identity` (what the job computes) keeps a job from
    resuming another job's checkpoint there. The device: --device, else the config's."""
    from .devices import pick_device

    device = pick_device(args.device or cfg["device"])
    return RunContext(seed=args.seed, device=device, out_dir=out.parent, progress=args.progress or None,
                      identity=config_hash(identity))


def _method_hp(cfg, method, data=None, budget=None) -> dict:
    """The method's validated hyperparameters from the config (its defaults when not listed); with the data,
    its stages scaled to the config's training budget (at `budget`; None: its artifacts' stages)."""
    hp = (cfg["methods"].get(method.name) or {}).get("hp") or method.resolve_hp(None)
    images = images_for(cfg, method)
    if data is None or images is None or method.derived_from:
        return hp
    return matched_hp(method, hp, len(data.train_y), images, budget)


def _policy_within_budget(cfg, method, run) -> None:
    """A separate controller's stage is kept within the training budget too: a warning where it was not."""
    images = images_for(cfg, method)
    if images is not None and run.images["policy"] > images:
        run.log.warning("%s trained its policy on %d images, more than the training budget of %d: lower its "
                        "policy stage (imitation, curriculum, Q-updates)", method.name, run.images["policy"], images)


def trained_on(run) -> dict:
    """Where a job's training ran: its device and its stages' precisions (e.g. "bf16", "fp32+bf16")."""
    return {"train_device": run.device, "train_precision": "+".join(sorted(set(run.precision.values()))) or None}


def load_model(path) -> tuple[torch.nn.Module, dict]:
    """A model file written by pretrain or train: (network, metadata)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model file {path} does not exist; run the step that produces it first")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
        return blob["model"], blob["meta"]
    except Exception as err:  # noqa: BLE001 - any failure here means an unusable file
        raise UserError(f"model file {path} cannot be read ({type(err).__name__}: {err}); it is truncated or "
                        f"from an incompatible version: delete it and re-run the step that produces it") from None


def diverged_record(*paths) -> dict | None:
    """The divergence an input carries (a model or artifact written for a job whose loss became NaN), else None."""
    for path in paths:
        if path and Path(path).exists():
            blob = torch.load(path, map_location="cpu", weights_only=False)
            if isinstance(blob, dict) and blob.get("diverged"):
                return blob["diverged"]
    return None


def _save_diverged(path, record: dict, meta: dict) -> None:
    """The output of a diverged job: what diverged where, in place of the model (a re-run skips it)."""
    save_torch({"model": None, "diverged": record, "meta": {**meta, "kind": "diverged", "diverged": record}}, path)
    print(f"diverged ({record['stage']}, epoch {record['epoch']}, step {record['step']}: loss {record['loss']}) "
          f"-> {path}")


def cmd_methods(args):
    for name, ep in sorted(registered_methods().items()):
        m = get_method(name)
        kind = "test-time" if m.test_time_knob else "train-time"
        print(f"{name:16s} knob={m.knob:10s} {kind:10s} {ep.value}")


def cmd_data(args):
    """Fetch and check the run's dataset once (the download with its pinned checksum into the cache, an image
    folder decoded into it), so that the jobs after it read the cache instead of each downloading."""
    cfg = load_config(args.config)
    data = _dataset(cfg)
    record = {"name": data.name, "path": cfg["data"]["path"], "classes": data.classes,
              "images": {split: len(getattr(data, f"{split}_y")) for split in ("train", "val", "test")},
              "shape": list(data.train_x.shape[1:])}
    write_json(record, args.out)
    print(f"{data.name}: {record['images']} images of {tuple(record['shape'])} -> {args.out}")


def cmd_pretrain(args):
    cfg = load_config(args.config)
    data = _dataset(cfg)
    out = Path(args.out)
    b = backbone_spec(cfg, args.backbone)
    run = _run_context(args, cfg, out, backbone=b)
    set_seed(args.seed)
    net = build_backbone(b["name"], data.num_classes, data.in_channels, shortcut=b["shortcut"], width=b["width"])
    spec = TrainSpec.from_dict(cfg["pretrain"], "pretrain")
    try:
        history = fit(net, data, spec, run, name=f"{out.name}.pretrain")
    except Diverged as err:
        _save_diverged(out, err.record, {"backbone": b, "dataset": cfg["data"]["name"], **provenance(cfg, args.seed)})
        if args.metrics:
            write_json({"diverged": err.record, "backbone": b, **provenance(cfg, args.seed)}, args.metrics)
        return
    net.to("cpu", memory_format=torch.contiguous_format)
    normalize = Normalizer(data.mean, data.std)
    metrics = {"test_accuracy": accuracy(net, data.test_x, data.test_y, normalize),
               "val_accuracy": history[-1]["val_acc"] if history else None,
               "train_seconds": sum(h["seconds"] for h in history),
               "images_per_s": (sum(h["images_per_s"] for h in history) / len(history)) if history else None,
               "history": history, "backbone": b, "dataset": cfg["data"]["name"], **trained_on(run),
               **provenance(cfg, args.seed)}
    meta = {"kind": "backbone", "backbone": b, "dataset": cfg["data"]["name"], "metrics": metrics}
    save_torch({"model": net, "meta": meta}, out)
    if args.metrics:
        write_json(metrics, args.metrics)
    run.remove_checkpoints()
    print(f"test accuracy {metrics['test_accuracy']:.4f} in {metrics['train_seconds'] / 60:.1f} min -> {out}")


def cmd_train(args):
    cfg = load_config(args.config)
    method = get_method(args.method)
    backbone, meta = load_model(args.backbone_model)
    if meta.get("kind") == "diverged":  # the pretraining diverged: every method on it does
        _save_diverged(args.out, meta["diverged"], {"method": method.name, "budget": float(args.budget),
                                                    "backbone": meta.get("backbone"), **provenance(cfg, args.seed)})
        return
    budget = method.check_budget(backbone, args.budget)
    data = _dataset(cfg)
    hp = _method_hp(cfg, method, data, budget)
    out = Path(args.out)
    run = _run_context(args, cfg, out, method=method.name, budget=budget, hp=hp, artifacts=args.artifact or [])
    for spec in args.artifact or []:
        name, _, path = spec.partition("=")
        if name not in method.artifacts or not path:
            raise UserError(f"--artifact {spec!r}: {method.name} takes {', '.join(method.artifacts) or 'no artifacts'} "
                            f"as NAME=PATH")
        run.artifacts[name] = path
    set_seed(args.seed)
    info = {"kind": "method", "method": method.name, "budget": budget, "hp": hp, "backbone": meta.get("backbone"),
            **provenance(cfg, args.seed)}
    # an input that diverged (the backbone, an artifact) makes this result diverged too
    upstream = diverged_record(*run.artifacts.values())
    try:
        if upstream:
            raise Diverged(**{**upstream, "stage": f"{upstream['stage']} (an input of {method.name})"})
        net = method.train(backbone, data, budget, hp, run)
    except Diverged as err:
        _save_diverged(out, err.record, info)
        run.remove_checkpoints()
        return
    net.to("cpu", memory_format=torch.contiguous_format).eval()
    _policy_within_budget(cfg, method, run)
    info.update(images=dict(run.images), training_budget=images_for(cfg, method), **trained_on(run),
                **_validation(net, data, method, budget, run))
    save_torch({"model": net, "meta": info}, out)
    run.remove_checkpoints()
    print(f"{method.name} at {method.knob}={budget} -> {out} ({run.images['train']} training images, "
          f"{run.images['policy']} policy images)")


def _validation(net, data, method, budget, run) -> dict:
    """The finished model's validation accuracy at its training budget, and a warning in the log where it fell
    well below the last training stage's (what ran after training lost accuracy: e.g. BN statistics
    re-estimated on unrepresentative images)."""
    if not len(data.val_x):
        return {"val_accuracy": None}
    model = copy.deepcopy(net)
    method.configure(model, budget)
    final = accuracy(model, data.val_x, data.val_y, Normalizer(data.mean, data.std))
    if run.validation:
        stage, before = run.validation[-1]
        warn_if_below("the finished model's validation", final, len(data.val_y),
                      f"stage {stage}'s validation", before, len(data.val_y), run.log)
    return {"val_accuracy": final}


def warn_if_below(what: str, acc: float, n: int, reference_what: str, reference: float, n_reference: int, log) -> bool:
    """Log a warning where `acc` is below `reference` by more than 1 pt plus three standard errors of the
    difference of two independent accuracies (a gap that sampling does not explain); True if it warned."""
    p = (acc + reference) / 2
    se = (p * (1 - p) * (1 / max(n, 1) + 1 / max(n_reference, 1))) ** 0.5
    if reference - acc <= 0.01 + 3 * se:
        return False
    log.warning("%s accuracy %.2f %% is %.1f pt below %s (%.2f %%): more than sampling explains; check what "
                "differs between them (BN statistics, the data's order, the budget's setting)", what, 100 * acc,
                100 * (reference - acc), reference_what, 100 * reference)
    return True


def cmd_derive(args):
    cfg = load_config(args.config)
    method = get_method(args.method)
    if method.derived_from is None:
        raise UserError(f"{method.name} is trained, not derived: use `prunebench train`")
    net, meta = load_model(args.trained_model)
    if meta.get("kind") == "diverged":  # the parent's training diverged: so does this derived model
        _save_diverged(args.out, meta["diverged"], {**meta, "method": method.name, **provenance(cfg, args.seed)})
        return
    if meta.get("method") != method.derived_from:
        raise UserError(f"{args.trained_model} holds a {meta.get('method') or meta.get('kind')} model; "
                        f"{method.name} is derived from {method.derived_from}'s")
    run = _run_context(args, cfg, Path(args.out), method=method.name, derived_from=args.trained_model)
    if args.backbone_model:
        load_model(args.backbone_model)  # a missing or unreadable file is one clear error here
        run.backbone = Path(args.backbone_model)
    set_seed(args.seed)
    # on the run's device: a derivation may re-estimate BN statistics (dlp_random: minutes on a GPU, not a CPU)
    net = method.derive(net.to(run.device), _dataset(cfg), _method_hp(cfg, method), run)
    net.to("cpu")
    save_torch({"model": net, "meta": {**meta, "method": method.name, "derived_from": args.trained_model,
                                      **provenance(cfg, args.seed)}}, args.out)
    print(f"{method.name} at {method.knob}={meta['budget']} (from {method.derived_from}) -> {args.out}")


def cmd_prepare(args):
    cfg = load_config(args.config)
    method = get_method(args.method)
    if args.artifact not in method.artifacts:
        raise UserError(f"{method.name} has no artifact {args.artifact!r}; it has: {', '.join(method.artifacts) or 'none'}")
    backbone, meta = load_model(args.backbone_model)
    if meta.get("kind") == "diverged":
        save_torch({"diverged": meta["diverged"]}, args.out)
        return
    data = _dataset(cfg)
    hp = _method_hp(cfg, method, data)
    run = _run_context(args, cfg, Path(args.out), method=method.name, artifact=args.artifact, hp=hp)
    set_seed(args.seed)
    try:  # with the images it trained on: every model that uses the artifact counts them as its own
        save_torch({"artifact": method.prepare(args.artifact, backbone, data, hp, run), "images": run.images}, args.out)
    except Diverged as err:  # recorded in place of the artifact; the budgets' train jobs record it in turn
        save_torch({"diverged": err.record}, args.out)
        print(f"{method.name} {args.artifact} diverged: {err}")
        return
    run.remove_checkpoints()
    print(f"{method.name} {args.artifact} -> {args.out}")


def _trained(args):
    """The model file's network, method and metadata, and the budgets to evaluate it at (validated)."""
    net, meta = load_model(args.model)
    if meta.get("kind") == "backbone" or (meta.get("kind") == "diverged" and "method" not in meta):
        return net, get_method("dense"), [1.0], meta
    method = get_method(meta["method"])
    if net is None:  # diverged: nothing to check the budgets on
        return net, method, [float(b) for b in args.budget] if args.budget else [meta["budget"]], meta
    budgets = [meta["budget"]] if not args.budget else [method.check_budget(net, b) for b in args.budget]
    for budget in budgets:
        if not method.test_time_knob and budget != meta["budget"]:
            raise UserError(f"{method.name} was trained at {method.knob}={meta['budget']} and its knob is not "
                            f"test-time: evaluate it at that budget")
    return net, method, budgets, meta


def _outputs(args, budgets, single: dict) -> list[dict]:
    """Per budget, the paths to write: in --out-dir as <budget>.<ext>, or the single-budget flags."""
    if args.out_dir:
        return [{key: budget_file(args.out_dir, b, ext) for key, ext in single.items()} for b in budgets]
    if len(budgets) > 1:
        raise UserError("several budgets need --out-dir (one file per budget)")
    return [{key: getattr(args, key) for key in single}]


def _result_keys(cfg, method, budget, meta) -> dict:
    """What identifies a result row (the table's keys besides the seed)."""
    return {"dataset": cfg["data"]["name"], "backbone": meta["backbone"]["name"], "method": method.name,
            "knob": method.knob, "ours": method.ours, "static": method.static,
            "train_budget": meta.get("budget", 1.0), "eval_budget": budget}


def _epochs(cfg, method, meta, train_size=None) -> dict:
    """Passes over the training split of each training stage behind a result (pretraining and the method's own
    stages, as trained: the model's hp is the one scaled to the training budget); the claims table's schedule
    column compares them with the paper's epochs. Without the data (a diverged result): the stages' epochs."""
    trainer = get_method(method.derived_from) if method.derived_from else method
    hp = meta.get("hp") or (_method_hp(cfg, trainer) if trainer.name in cfg["methods"] else trainer.resolve_hp(None))
    stages = {k: stage_images(v, train_size, k) / train_size if train_size else v["epochs"]
              for k, v in hp.items() if isinstance(v, dict) and "epochs" in v}
    return {"pretrain": TrainSpec.from_dict(cfg["pretrain"]).epochs, **stages}


def cmd_evaluate(args):
    """Every budget of one trained model in one process: the model, the data and the dense cost table
    are loaded once; each budget runs on a fresh copy of the model, as a separate job would."""
    cfg = load_config(args.config)
    net, method, budgets, meta = _trained(args)
    outputs = _outputs(args, budgets, {"summary": "json", "records": "parquet"})
    if not outputs[0]["summary"]:
        raise UserError("evaluate: give --summary (one budget) or --out-dir")
    data = None if net is None else _dataset(cfg)
    _evaluate_budgets(args, cfg, data, net, method, budgets, meta, outputs)
    if args.latency_out_dir:  # one process for both where latency need not run alone (latency.exclusive: false)
        _time_budgets(args, cfg, data, net, method, budgets, meta, [budget_file(args.latency_out_dir, b, "json")
                                                                     for b in budgets])


def _evaluate_budgets(args, cfg, data, net, method, budgets, meta, outputs) -> None:
    """Summary JSON (and per-sample records) of `net` at each budget (a diverged training: rows that say so,
    with no measurements and no records)."""
    from .flops import Accountant

    if net is None:
        for budget, out in zip(budgets, outputs):
            write_json({**_result_keys(cfg, method, budget, meta), **provenance(cfg, args.seed), "status": "diverged",
                        "diverged": meta["diverged"], "epochs": _epochs(cfg, method, meta)}, out["summary"])
        print(f"{method.name}: diverged ({meta['diverged']['stage']}), {len(budgets)} rows recorded as such")
        return
    accountant = None
    for budget, out in zip(budgets, outputs):
        set_seed(args.seed)
        model = copy.deepcopy(net)  # Method.evaluate configures the budget on it
        accountant = accountant or Accountant(model, (data.in_channels, *data.image_size))
        run = _run_context(args, cfg, Path(out["summary"]))
        result = method.evaluate(model, data, budget, run, batch_size=cfg["evaluate"]["batch_size"], accountant=accountant)
        summary = {**result.summary, **_result_keys(cfg, method, budget, meta), **provenance(cfg, args.seed),
                   "train_device": meta.get("train_device"), "train_precision": meta.get("train_precision"),
                   "eval_device": run.device, "status": "ok", "epochs": _epochs(cfg, method, meta, len(data.train_x)),
                   **_training_images(meta, data)}
        if budget == meta.get("budget") and meta.get("val_accuracy") is not None and not meta.get("derived_from"):
            warn_if_below(f"{method.name} at {method.knob}={budget}: test", summary["accuracy"], len(data.test_y),
                          "its validation after training", meta["val_accuracy"], len(data.val_y), run.log)
        if out["records"]:
            write_parquet(result.records, out["records"])
        write_json(summary, out["summary"])
        print(f"{method.name} {method.knob}={budget}: accuracy {summary['accuracy']:.4f}, "
              f"MACs {summary['macs_mean'] / 1e6:.2f}M ({summary['macs_frac']:.1%} of dense)")


def _training_images(meta, data) -> dict:
    """Images trained on after pretraining (the dense network: none) and the training compute in dense
    training epochs (image passes over the training split, every image counted alike)."""
    images = meta.get("images", {"train": 0, "policy": 0})
    return {"train_images": images["train"], "policy_images": images["policy"],
            "train_epochs": images["train"] / len(data.train_x)}


def cmd_latency(args):
    cfg = load_config(args.config)
    net, method, budgets, meta = _trained(args)
    outputs = [out["out"] for out in _outputs(args, budgets, {"out": "json"})]
    if not outputs[0]:
        raise UserError("latency: give --out (one budget) or --out-dir")
    _time_budgets(args, cfg, None if net is None else _dataset(cfg), net, method, budgets, meta, outputs)


def _time_budgets(args, cfg, data, net, method, budgets, meta, outputs) -> None:
    """Skip-mode latency of `net` at each budget into its JSON (a diverged training: rows that say so)."""
    from .evaluate import latency

    lat = cfg["latency"]
    for budget, out in zip(budgets, outputs):
        keys = {**_result_keys(cfg, method, budget, meta), **provenance(cfg, args.seed)}
        if net is None:  # diverged: nothing to time
            write_json({**keys, "status": "diverged", "batches": {}}, out)
            continue
        model = copy.deepcopy(net)
        method.configure(model, budget)
        result = latency(model, data, _run_context(args, cfg, Path(out)), batch_sizes=lat["batch_sizes"],
                         warmup=lat["warmup"], repeats=lat["repeats"])
        write_json({**result, **keys}, out)
        for bs, row in result["batches"].items():
            print(f"{method.name} {method.knob}={budget} batch {bs}: {row['model_ms']:.2f} ms "
                  f"(dense {row['dense_ms']:.2f} ms, x{row['speedup']:.2f})")
