rule gather:
    """Every evaluation and latency result into tidy tables (CSV, Markdown, LaTeX) and the Pareto table."""
    input:
        evals=EVAL_DIRS,
        latency=LATENCY_DIRS,
    output:
        summary=report(RESULTS + "/tables/summary.csv", caption="../report/summary.rst", category="Tables"),
        markdown=RESULTS + "/tables/summary.md",
        latex=RESULTS + "/tables/summary.tex",
        pareto=report(RESULTS + "/tables/pareto.csv", caption="../report/pareto.rst", category="Tables"),
        pareto_md=RESULTS + "/tables/pareto.md",
        claims=report(RESULTS + "/tables/claims.csv", caption="../report/claims.rst", category="Tables"),
        claims_md=RESULTS + "/tables/claims.md",
    log:
        RESULTS + "/logs/gather.log",
    benchmark:
        RESULTS + "/benchmarks/gather.tsv"
    shell:
        PRUNEBENCH + " gather --evals {input.evals} --latency {input.latency} --out-dir " + RESULTS + "/tables > {log} 2>&1"


rule cost:
    """Minutes and peak memory per method, summed over its jobs' benchmark files (prepare, train,
    evaluate, latency; pretraining its own row). After every other job, so that all files exist."""
    input:
        summary=RESULTS + "/tables/summary.csv",
        figures=FIGURES,
    output:
        table=report(RESULTS + "/tables/cost.csv", caption="../report/cost.rst", category="Tables"),
        markdown=RESULTS + "/tables/cost.md",
    params:
        entries=cost_entries(),
    log:
        RESULTS + "/logs/cost.log",
    shell:
        PRUNEBENCH + " cost --entries {params.entries} --summary {input.summary} --out-dir " + RESULTS + "/tables"
        " > {log} 2>&1"


rule plot:
    """Accuracy vs MACs, realized vs MACs speedup, per-sample MACs histograms, per-layer gate widths, training curves."""
    input:
        summary=RESULTS + "/tables/summary.csv",
        records=EVAL_DIRS,
    output:
        report(RESULTS + "/figures/accuracy_vs_macs.png", caption="../report/accuracy_vs_macs.rst", category="Figures"),
        report(RESULTS + "/figures/latency_vs_macs.png", caption="../report/latency_vs_macs.rst", category="Figures"),
        report(RESULTS + "/figures/macs_histograms.png", caption="../report/macs_histograms.rst", category="Figures"),
        report(RESULTS + "/figures/gate_widths.png", caption="../report/gate_widths.rst", category="Figures"),
        report(RESULTS + "/figures/training_curves.png", caption="../report/training_curves.rst", category="Figures"),
    log:
        RESULTS + "/logs/plot.log",
    benchmark:
        RESULTS + "/benchmarks/plot.tsv"
    shell:
        PRUNEBENCH + " plot --summary {input.summary} --results-root " + RESULTS + " --out-dir " + RESULTS + "/figures"
        " > {log} 2>&1"
