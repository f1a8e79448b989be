rule train_method:
    """One method at one train-time budget, from the pretrained backbone."""
    input:
        backbone=RESULTS + "/{dataset}/{backbone}/seed{seed}/pretrain/model.pt",
    output:
        model=RUN + "/model.pt",
    params:
        fingerprint=lambda w: fingerprint("data", "backbone", "pretrain", method=w.method),
    log:
        RESULTS + "/logs/train/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}.log",
    benchmark:
        RESULTS + "/benchmarks/train/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}.tsv"
    threads: min(2, workflow.cores)
    resources:
        gpu=1,
    shell:
        "prunebench train --config " + CONFIG_FILE + " --method {wildcards.method} --budget {wildcards.train_budget}"
        " --seed {wildcards.seed} --threads {threads} --backbone-model {input.backbone} --out {output.model}"
        " > {log} 2>&1"
