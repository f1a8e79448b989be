rule pretrain:
    """Dense backbone: one per dataset x backbone x seed."""
    output:
        model=RESULTS + "/{dataset}/{backbone}/seed{seed}/pretrain/model.pt",
        metrics=RESULTS + "/{dataset}/{backbone}/seed{seed}/pretrain/metrics.json",
    params:
        fingerprint=fingerprint("data", "backbone", "pretrain"),
    log:
        RESULTS + "/logs/pretrain/{dataset}_{backbone}_seed{seed}.log",
    benchmark:
        RESULTS + "/benchmarks/pretrain/{dataset}_{backbone}_seed{seed}.tsv"
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        PRUNEBENCH + " pretrain --config " + CONFIG_FILE + " --backbone {wildcards.backbone} --seed {wildcards.seed}"
        " --threads {threads} --out {output.model} --metrics {output.metrics} > {log} 2>&1"
