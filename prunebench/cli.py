"""`prunebench <verb>`: what each workflow rule calls; usable without Snakemake.

Every verb takes explicit input and output paths and writes its outputs atomically.
Errors exit non-zero with one line; --debug shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from .errors import DatasetError, UserError
from .memory import keep_freed_memory


def cmd_gather(args):
    from .tables import summary_table, write_tables

    def jsons(paths):  # a folder stands for the JSON files in it (one per budget)
        missing = [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise UserError(f"gather: {missing[0]} does not exist; run the evaluate (or latency) job that writes it")
        return [f for p in map(Path, paths) for f in (sorted(p.glob("*.json")) if p.is_dir() else [p])]

    table = summary_table(jsons(args.evals), jsons(args.latency or ()))
    if table.empty:
        raise UserError("gather: no evaluation summaries given")
    write_tables(table, args.out_dir)
    print(f"{len(table)} rows -> {args.out_dir}")


def cmd_cost(args):
    from .cost import cost_table, with_training_images
    from .io import atomic_path

    try:
        table = cost_table(args.entries)
    except ValueError as err:
        raise UserError(str(err)) from None
    if args.summary:
        import pandas as pd

        table = with_training_images(table, pd.read_csv(args.summary))
    out = Path(args.out_dir)
    with atomic_path(out / "cost.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out / "cost.md") as tmp:
        tmp.write_text(table.to_markdown(index=False, floatfmt=".2f") + "\n")
    print(f"{len(table)} rows, {table['total_min'].sum():.1f} min in all -> {out / 'cost.csv'}")


def cmd_plot(args):
    import pandas as pd

    from . import plots
    from .layout import budget_file, run_dir

    summary = pd.read_csv(args.summary)
    if "status" in summary:  # a diverged training has no point to draw (the tables list it)
        summary = summary[summary["status"] == "ok"]
    out = Path(args.out_dir)
    plots.accuracy_vs_macs(summary, out / "accuracy_vs_macs.png")
    plots.latency_vs_macs(summary, out / "latency_vs_macs.png")
    def evaluation(r, suffix):  # one evaluation's file
        folder = run_dir(args.results_root, r["dataset"], r["backbone"], r["seed"], r["method"], r["train_budget"])
        return budget_file(folder / "eval", r["eval_budget"], suffix)

    plots.macs_histograms(plots.mid_budget_records(summary, lambda r: evaluation(r, "parquet")),
                          out / "macs_histograms.png")
    def read_json(path):
        return json.loads(path.read_text())

    plots.gate_widths(plots.mid_budget_records(summary, lambda r: evaluation(r, "json"), read=read_json),
                      out / "gate_widths.png")
    plots.training_curves(plots.replicated_budget_evaluations(summary, lambda r: evaluation(r, "json"), read_json),
                          out / "training_curves.png")
    print(f"figures -> {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prunebench", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    # --debug after the verb too (where the error's hint puts it); SUPPRESS keeps a verb from resetting it
    after_verb = argparse.ArgumentParser(add_help=False)
    after_verb.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = parser.add_subparsers(dest="verb", required=True)

    def verb(name, help_):  # a verb of cli_models: imported (with torch) when it runs
        p = sub.add_parser(name, help=help_, parents=[after_verb])
        p.set_defaults(func=f"cmd_{name}")
        if name != "methods":
            p.add_argument("--config", help="experiment YAML (defaults when omitted)")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: the config's device, auto)")
            p.add_argument("--progress", action="store_true", help="progress bar even when not a terminal")
            p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        return p

    verb("methods", "list registered methods and their budget knobs")
    p = verb("data", "fetch and check the config's dataset once (download into the cache, decode image folders)")
    p.add_argument("--out", required=True, help="JSON record of what was loaded")
    p = verb("pretrain", "train the dense backbone")
    p.add_argument("--backbone", help="one of the config's backbone.names (default: its only one)")
    p.add_argument("--out", required=True, help="model file to write")
    p.add_argument("--metrics", help="JSON with accuracy, history and provenance")
    p = verb("train", "train one method at one budget from a pretrained backbone")
    p.add_argument("--method", required=True)
    p.add_argument("--budget", required=True)
    p.add_argument("--backbone-model", required=True, help="model file written by pretrain")
    p.add_argument("--artifact", action="append", help="NAME=PATH of a precomputed artifact (see prepare)")
    p.add_argument("--out", required=True)
    p = verb("derive", "a derived method's model from its parent's trained model (e.g. lcnet_seq)")
    p.add_argument("--method", required=True)
    p.add_argument("--trained-model", required=True, help="model file the parent method's train wrote")
    p.add_argument("--backbone-model", help="the pretrained backbone (a control that runs it, e.g. dlp_pretrained)")
    p.add_argument("--out", required=True)
    p = verb("prepare", "a method's per-backbone precomputation (e.g. DLP's expert ranks)")
    p.add_argument("--method", required=True)
    p.add_argument("--artifact", required=True)
    p.add_argument("--backbone-model", required=True, help="model file written by pretrain")
    p.add_argument("--out", required=True)
    for name, help_ in (("evaluate", "per-sample records and a summary on the test set"),
                        ("latency", "skip-mode latency at batch 1 and 64")):
        p = verb(name, help_)
        p.add_argument("--model", required=True, help="model file written by pretrain or train")
        p.add_argument("--budget", nargs="+", default=None,
                       help="eval budget(s) (several: test-time knobs; default: the trained one)")
        p.add_argument("--out-dir", help="write <budget>.json (and .parquet) here for each budget")
        if name == "evaluate":
            p.add_argument("--records", help="parquet file of per-sample records (one budget)")
            p.add_argument("--summary", help="JSON summary (one budget)")
            p.add_argument("--latency-out-dir", help="also time each budget (as the latency verb) into <budget>.json here")
        else:
            p.add_argument("--out", help="JSON result (one budget)")
    p = sub.add_parser("gather", parents=[after_verb], help="summary and Pareto tables from evaluation and latency JSONs")
    p.set_defaults(func=cmd_gather)
    p.add_argument("--evals", nargs="+", required=True, help="JSON files, or folders of them")
    p.add_argument("--latency", nargs="*", help="JSON files, or folders of them")
    p.add_argument("--out-dir", required=True)
    p = sub.add_parser("cost", parents=[after_verb], help="minutes and peak memory per method from the jobs' benchmark files")
    p.set_defaults(func=cmd_cost)
    p.add_argument("--entries", nargs="+", required=True, help="BACKBONE:METHOD:STAGE:PATH of each job's benchmark TSV")
    p.add_argument("--summary", help="summary.csv: adds each method's training images per trained model")
    p.add_argument("--out-dir", required=True)
    p = sub.add_parser("plot", parents=[after_verb], help="figures from the summary table and per-sample records")
    p.set_defaults(func=cmd_plot)
    p.add_argument("--summary", required=True)
    p.add_argument("--results-root", required=True, help="root of the per-run folders (for the records)")
    p.add_argument("--out-dir", required=True)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    func = args.func
    if isinstance(func, str):  # a model verb
        func = getattr(importlib.import_module(".cli_models", __package__), func)
        if getattr(args, "threads", 0):
            import torch

            torch.set_num_threads(args.threads)
    keep_freed_memory()
    try:
        func(args)
    except (UserError, DatasetError) as err:
        if args.debug:
            raise
        print(f"prunebench: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - one line unless --debug
        if args.debug:
            raise
        print(f"prunebench: {type(err).__name__}: {err} (re-run with --debug for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
