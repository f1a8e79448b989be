rule prepare:
    """A method's per-backbone precomputation, shared by all its train budgets."""
    input:
        backbone=pretrained,
    output:
        RESULTS + "/{dataset}/{backbone}/seed{seed}/{method}/artifacts/{artifact}.pt",
    params:
        fingerprint=lambda w: fingerprint("data", "backbone", "pretrain", method=w.method,
                                          hp_keys=ARTIFACTS[w.method][w.artifact]),
    log:
        RESULTS + "/logs/prepare/{dataset}_{backbone}_seed{seed}_{method}_{artifact}.log",
    benchmark:
        RESULTS + "/benchmarks/prepare/{dataset}_{backbone}_seed{seed}_{method}_{artifact}.tsv"
    threads: 1  # two single-threaded jobs side by side: 13 % more images/s than one on two threads (README)
    priority: lambda w: waiting_models(w, artifact=True)
    resources:
        gpu=1,
    shell:
        PRUNEBENCH + " prepare --config " + CONFIG_FILE + " --method {wildcards.method} --artifact {wildcards.artifact}"
        " --seed {wildcards.seed} --threads {threads} --backbone-model {input.backbone} --out {output} > {log} 2>&1"


rule train_method:
    """One method at one train-time budget, from the pretrained backbone (and its artifacts); a derived
    method (e.g. lcnet_seq) takes its parent's trained model instead and trains nothing."""
    input:
        unpack(train_inputs),
    output:
        model=RUN + "/model.pt",
    params:
        fingerprint=lambda w: fingerprint("data", "backbone", "pretrain", method=DERIVED.get(w.method, w.method)),
        command=train_command,
    log:
        RESULTS + "/logs/train/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}.log",
    benchmark:
        RESULTS + "/benchmarks/train/{dataset}_{backbone}_seed{seed}_{method}_{train_budget}.tsv"
    threads: 1  # as prepare: the two cores run two method jobs
    priority: lambda w: waiting_models(w) if w.method not in DERIVED else 0
    resources:
        gpu=1,
    shell:
        PRUNEBENCH + " {params.command} --config " + CONFIG_FILE + " --method {wildcards.method}"
        " --seed {wildcards.seed} --threads {threads} --out {output.model} > {log} 2>&1"
