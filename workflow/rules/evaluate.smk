rule evaluate:
    """Per-sample records and a summary of one trained model at each of its evaluation budgets: one
    process loads the model, the data and the dense cost table once (<budget>.json/.parquet in eval/);
    with latency.exclusive false, also its latency (<budget>.json in latency/)."""
    input:
        model=RUN + "/model.pt",
    output:
        evals=directory(RUN + "/eval"),
        **({} if LATENCY_APART else {"latency": directory(RUN + "/latency")}),
    params:
        fingerprint=lambda w: fingerprint("data", "evaluate", *([] if LATENCY_APART else ["latency"]), method=w.method),
        budgets=eval_budgets,
        latency=lambda w, output: "" if LATENCY_APART else f" --latency-out-dir {output.latency}",
    log:
        RESULTS + "/logs/evaluate/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}.log",
    benchmark:
        RESULTS + "/benchmarks/evaluate/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}.tsv"
    threads: 1
    resources:
        gpu=1,
    shell:
        PRUNEBENCH + " evaluate --config " + CONFIG_FILE + " --model {input.model} --budget {params.budgets}"
        " --seed {wildcards.seed} --threads {threads} --out-dir {output.evals}{params.latency} > {log} 2>&1"


if LATENCY_APART:

    rule latency:
        """Skip-mode latency at each evaluation budget beside the dense backbone's; takes every core so
        nothing else runs meanwhile (<budget>.json in latency/)."""
        input:
            model=RUN + "/model.pt",
        output:
            directory(RUN + "/latency"),
        params:
            fingerprint=lambda w: fingerprint("data", "latency", method=w.method),
            budgets=eval_budgets,
        log:
            RESULTS + "/logs/latency/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}.log",
        benchmark:
            RESULTS + "/benchmarks/latency/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}.tsv"
        threads: workflow.cores
        resources:
            gpu=1,
        shell:
            PRUNEBENCH + " latency --config " + CONFIG_FILE + " --model {input.model} --budget {params.budgets}"
            " --seed {wildcards.seed} --threads {threads} --out-dir {output} > {log} 2>&1"
