"""Config validation, the resolved config the CLI reads, target lists and rerun fingerprints."""

import shlex
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate as schema_validate

from prunebench.api import UserError, get_method
from prunebench.budget import shared_stages
from prunebench.config import backbone_seed, config_hash, method_budgets, replicate_budgets, validate as validate_config
from prunebench.io import atomic_path
from prunebench.layout import budget_str

RESULTS = "results"
# The CLI through the interpreter Snakemake runs in: no activated environment is needed, on this
# machine or in a cluster's batch job (whose shell does not have the venv's bin on PATH).
PRUNEBENCH = f"{shlex.quote(sys.executable)} -m prunebench"

# The prunebench validator first (its errors name the key path), then the JSON schema.
try:
    CFG = validate_config(config)
except UserError as err:
    raise WorkflowError(f"invalid config: {err}")
schema_validate(config, "../schemas/config.schema.yaml")


def _write_resolved_config(cfg):
    """The validated config the CLI reads: a stable path, rewritten only when its content changes,
    and not a declared input, so that editing one section re-runs only the jobs that use it."""
    path = Path(RESULTS) / ".config" / "config.yaml"
    text = yaml.safe_dump(cfg, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return str(path)


CONFIG_FILE = _write_resolved_config(CFG)
DATASET = CFG["data"]["name"]
# latency.exclusive (the default): latency jobs run alone, holding every core, for timings nothing else
# disturbs. Otherwise each evaluation job also times its model: one process per trained model, not two.
LATENCY_APART = CFG["latency"]["exclusive"]


def fingerprint(*sections, method=None, hp_keys=None):
    """Hash of what a job depends on: params change -> Snakemake re-runs that job only.
    A method contributes its hyperparameters (all, or `hp_keys`; its budgets are in the paths) and its training
    budget where that scales a stage of the job (not DLP's expert ranks, which train nothing)."""
    part = {k: CFG[k] for k in sections}
    m = get_method(method) if method is not None else None
    scaled = m is not None and (hp_keys is None or set(hp_keys) & set(shared_stages(m)))
    if scaled and CFG["training_budget"] is not None:
        part["training_budget"] = CFG["training_budget"] * m.budget_multiple
    if method is not None:
        hp = CFG["methods"][method]["hp"]
        part["method"] = hp if hp_keys is None else {k: hp[k] for k in hp_keys if k in hp}
    return config_hash(part)


# Per-backbone precomputations each method declares (e.g. DLP's expert ranks): made once by `prepare`.
ARTIFACTS = {name: get_method(name).artifacts for name in CFG["methods"]}


# Methods that run another method's trained models (e.g. lcnet_seq from lcnet): method -> parent.
DERIVED = {name: get_method(name).derived_from for name in CFG["methods"] if get_method(name).derived_from}


def waiting_models(w, artifact: bool = False) -> int:
    """How many trained models wait on a job (its scheduling priority): an artifact holds up every budget of
    its method and the models derived from them; a trained model, its derived models. So DLP's expert ranks
    (DLP and four derived models) start first: the longest path."""
    derived = sum(parent == w.method for parent in DERIVED.values())
    if artifact:
        return len(trained_budgets(w.method, w.backbone, int(w.seed))) * (1 + derived)
    return derived


def pretrained(w):
    """The pretrained backbone a run starts from (a replicate seed's: the first seed's)."""
    return f"{RESULTS}/{w.dataset}/{w.backbone}/seed{backbone_seed(CFG, int(w.seed))}/pretrain/model.pt"


def train_inputs(w):
    """A trained method's inputs: the pretrained backbone and its artifacts; a derived one's: its parent's model
    (and the backbone, which a control may run)."""
    backbone = pretrained(w)
    if w.method in DERIVED:
        return {"trained": RUN.format(dataset=w.dataset, backbone=w.backbone, seed=w.seed, method=DERIVED[w.method],
                                      train_budget=w.train_budget) + "/model.pt", "backbone": backbone}
    return {**artifact_paths(w), "backbone": backbone}


def train_command(w, input):
    if w.method in DERIVED:
        return f"derive --trained-model {input.trained} --backbone-model {input.backbone}"
    artifacts = " ".join(f"--artifact {name}={path}" for name, path in artifact_paths(w).items())
    return f"train --budget {w.train_budget} --backbone-model {input.backbone} {artifacts}"


def artifact_owner(method, artifact):
    """The entry whose prepare job makes `method`'s artifact: the method it shares artifacts with (a
    <method>_<k>x entry: its method, where the artifact trains no weights) when that entry is configured and their
    hyperparameters agree; otherwise its own."""
    m = get_method(method)
    owner = type(m).name if m.budget_multiple > 1 and artifact not in m.artifact_stages else m.shares_artifacts_of
    if owner in CFG["methods"] and all(CFG["methods"][owner]["hp"][k] == CFG["methods"][method]["hp"][k]
                                       for k in m.artifacts[artifact]):
        return owner
    return method


def artifact_paths(w):
    """A method's prepared artifacts: its seed's own or, for a replicate seed, the first seed's."""
    seed = backbone_seed(CFG, int(w.seed))
    return {name: f"{RESULTS}/{w.dataset}/{w.backbone}/seed{seed}/{artifact_owner(w.method, name)}/artifacts/{name}.pt"
            for name in ARTIFACTS[w.method]}


def trained_budgets(method, backbone, seed):
    """The train budgets a seed runs: all of them, or a replicate seed's replicated ones."""
    if seed in CFG["replicate_seeds"]:
        return replicate_budgets(CFG, method, backbone)
    return method_budgets(CFG, method, backbone)[0]


def runs():
    """One dict of wildcards per evaluation: backbone x seed x method x train budget x eval budget."""
    for backbone in CFG["backbone"]["names"]:
        for seed in CFG["seeds"] + CFG["replicate_seeds"]:
            for method, entry in CFG["methods"].items():
                if backbone not in entry["backbones"]:
                    continue
                evals = method_budgets(CFG, method, backbone)[1]
                for train_budget in trained_budgets(method, backbone, seed):
                    for eval_budget in evals or [train_budget]:
                        yield dict(dataset=DATASET, backbone=backbone, seed=seed, method=method,
                                   train_budget=budget_str(train_budget), eval_budget=budget_str(eval_budget))


def eval_budgets(w):
    """A trained model's evaluation budgets (its train budget unless the knob is test-time), as in result paths."""
    evals = method_budgets(CFG, w.method, w.backbone)[1]
    return " ".join(budget_str(b) for b in evals or [w.train_budget])


RUN = RESULTS + "/{dataset}/{backbone}/seed{seed}/{method}/{train_budget}"
if not list(runs()):
    raise WorkflowError("invalid config: no method has a budget to run; list methods with train_budgets")
# One evaluation job and one latency job per trained model: folders of <eval budget>.json (and .parquet).
TRAINED = sorted({RUN.format(**{k: v for k, v in r.items() if k != "eval_budget"}) for r in runs()})
EVAL_DIRS = [f"{run}/eval" for run in TRAINED]
# Latency needs no replicates: their job is the noise of accuracy and cost.
LATENCY_DIRS = [f"{run}/latency" for run in TRAINED
                if not any(f"/seed{seed}/" in run for seed in CFG["replicate_seeds"])]
FIGURES = [f"{RESULTS}/figures/{name}.png" for name in ("accuracy_vs_macs", "latency_vs_macs", "macs_histograms")]


wildcard_constraints:
    seed=r"\d+",
    method=r"[A-Za-z0-9_]+",
    backbone=r"[A-Za-z0-9_]+",
    train_budget=r"[0-9.e+-]+",
    eval_budget=r"[0-9.e+-]+",
    artifact=r"[A-Za-z0-9_]+",


def cost_entries():
    """BACKBONE:METHOD:STAGE:PATH of the benchmark file of every job the DAG runs (read by the cost table)."""
    bench = RESULTS + "/benchmarks"
    entries = []
    for backbone in CFG["backbone"]["names"]:
        for seed in CFG["seeds"] + CFG["replicate_seeds"]:
            replicate = seed in CFG["replicate_seeds"]
            if not replicate:
                entries.append(f"{backbone}:pretrain:pretrain:{bench}/pretrain/{DATASET}_{backbone}_seed{seed}.tsv")
            for method, entry in CFG["methods"].items():
                budgets = trained_budgets(method, backbone, seed) if backbone in entry["backbones"] else []
                stem = f"{DATASET}_{backbone}_seed{seed}_{method}"
                if method not in DERIVED and budgets and not replicate:
                    entries += [f"{backbone}:{method}:prepare:{bench}/prepare/{DATASET}_{backbone}_seed{seed}_"
                                f"{artifact_owner(method, a)}_{a}.tsv" for a in ARTIFACTS[method]]
                # replicates have no latency; without latency jobs, the evaluation job's time includes it
                stages = ("train", "evaluate", "latency") if LATENCY_APART and not replicate else ("train", "evaluate")
                for budget in budgets:
                    entries += [f"{backbone}:{method}:{stage}:{bench}/{stage}/{stem}_{budget_str(budget)}.tsv"
                                for stage in stages]
    return entries

