"""prunebench: data -> dense pretraining -> methods x budgets -> evaluation sweeps -> tables -> plots -> report.

    snakemake --cores all                                   # the embedded default (config/config.yaml)
    snakemake --cores all --configfile config/smoke.yaml    # any other config replaces it
    snakemake --report results/report.html
"""

import os

from snakemake.utils import min_version

min_version("8.0")


# A --configfile replaces the embedded default instead of being merged into it (Snakemake merges
# nested dicts, which would silently mix two configs' method lists and hyperparameters);
# --config key=value still overrides single keys of whichever config is in use.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/methods.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


onstart:
    # The dataset fetched and checked once, before any job starts: the download with its pinned checksum (or an
    # image folder's decoding) into the cache every job then reads, so pretraining jobs do not all download at
    # once and a compute node needs no network.
    shell(f"{PRUNEBENCH} data --config {CONFIG_FILE} --out {RESULTS}/{DATASET}/data.json")


rule all:
    input:
        f"{RESULTS}/tables/summary.csv",
        f"{RESULTS}/tables/pareto.csv",
        f"{RESULTS}/tables/claims.csv",
        f"{RESULTS}/tables/cost.csv",
        FIGURES,
