rule evaluate:
    """Per-sample records and a summary of one trained model at one evaluation budget."""
    input:
        model=RUN + "/model.pt",
    output:
        records=RUN + "/eval/{eval_budget}.parquet",
        summary=RUN + "/eval/{eval_budget}.json",
    params:
        fingerprint=lambda w: fingerprint("data", "evaluate", method=w.method),
    log:
        RESULTS + "/logs/evaluate/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}_{eval_budget}.log",
    benchmark:
        RESULTS + "/benchmarks/evaluate/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}_{eval_budget}.tsv"
    threads: 1
    shell:
        "prunebench evaluate --config " + CONFIG_FILE + " --model {input.model} --budget {wildcards.eval_budget}"
        " --seed {wildcards.seed} --threads {threads} --records {output.records} --summary {output.summary}"
        " > {log} 2>&1"


rule latency:
    """Skip-mode latency beside the dense backbone's; takes every core so nothing else runs meanwhile."""
    input:
        model=RUN + "/model.pt",
    output:
        RUN + "/latency/{eval_budget}.json",
    params:
        fingerprint=lambda w: fingerprint("data", "latency", method=w.method),
    log:
        RESULTS + "/logs/latency/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}_{eval_budget}.log",
    benchmark:
        RESULTS + "/benchmarks/latency/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}_{eval_budget}.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        "prunebench latency --config " + CONFIG_FILE + " --model {input.model} --budget {wildcards.eval_budget}"
        " --seed {wildcards.seed} --threads {threads} --out {output} > {log} 2>&1"
