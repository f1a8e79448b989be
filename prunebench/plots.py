"""Figures from the summary table and per-sample records (seaborn, written atomically as PNG)."""

from __future__ import annotations


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .io import atomic_path  # noqa: E402


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


BLOCK_KNOBS = ("blocks", "gamma")  # methods that skip whole blocks; every other knob gates channels


def accuracy_vs_macs(summary: pd.DataFrame, path) -> None:
    """Accuracy against MACs (fraction of dense): one row of panels per dataset x backbone, block-skipping and
    channel methods apart. Each method's Pareto front is a line through its seed-mean points, dominated points
    faint, seed spread as error bars where a point has several seeds; controls this harness adds (`ours`)
    dashed, in grey; the dense network a star and a dotted line; the legend beside each panel, off the data."""
    from .api import at_larger_budget
    from .tables import pareto_frontier

    settings = list(summary.groupby(["dataset", "backbone"]))
    larger = {m: at_larger_budget(m) for m in summary["method"].unique() if at_larger_budget(m)}
    # a third panel where the config runs methods at k x the training budget: those beside their own runs
    kinds = ("blocks", "channels", "larger") if larger else ("blocks", "channels")
    fig, axes = plt.subplots(len(settings), len(kinds), figsize=(7.5 * len(kinds), 4.8 * len(settings)), squeeze=False)
    # one colour per family (dlp, dlp_oracle; sanp, sanp_static, ...), lighter and another marker for each
    # variant; this harness's controls (`ours`) in grey, told apart by their markers
    ours = sorted(summary.loc[summary["ours"].fillna(False).astype(bool), "method"].unique())
    families: dict[str, list] = {}
    for method in sorted(set(summary["method"]) - set(ours) - {"dense"}, key=lambda m: (m.split("_")[0], m)):
        families.setdefault(method.split("_")[0], []).append(method)
    palette, markers = dict(zip(ours, sns.color_palette("Greys", len(ours) + 2)[2:])), dict(zip(ours, "sv^DPX" * 3))
    colours = [c for i, c in enumerate(sns.color_palette("tab10")) if i != 7]  # tab10 without its grey
    for i, members in enumerate(families.values()):
        base = colours[i % len(colours)]
        for k, method in enumerate(members):
            palette[method] = tuple(c + (1 - c) * 0.5 * k / len(members) for c in base)
            markers[method] = "os^D"[k % 4]
    for row, ((dataset, backbone), g) in zip(axes, settings):
        means = (g.groupby(["method", "train_budget", "eval_budget"])
                 .agg(macs_frac=("macs_frac", "mean"), accuracy=("accuracy", "mean"), sd=("accuracy", "std"),
                      seeds=("seed", "nunique"), ours=("ours", "max"), knob=("knob", "first")).reset_index())
        dense = means[means["method"] == "dense"]
        blocks = means["knob"].isin(BLOCK_KNOBS)
        shown = {"blocks": blocks & ~means["method"].isin(larger), "channels": ~blocks & ~means["method"].isin(larger),
                 "larger": means["method"].isin([*larger, *(base for base, _ in larger.values())])}
        trained_rows = g[~g["method"].isin(larger) & (g.get("train_images", 0) > 0)]
        budget = trained_rows["train_images"].median() if len(trained_rows) else float("nan")
        for ax, kind in zip(row, kinds):
            for method, m in means[(means["method"] != "dense") & shown[kind]].groupby("method"):
                front = pareto_frontier(m["macs_frac"].to_numpy(), m["accuracy"].to_numpy())
                style = "--" if m["ours"].any() else "-"
                ax.plot(front[:, 0], front[:, 1], style, marker=markers[method], color=palette[method], label=method,
                        lw=1.6 if style == "-" else 1.1)
                ax.scatter(m["macs_frac"], m["accuracy"], color=palette[method], alpha=0.3, s=14)
                spread = m[m["seeds"] > 1]
                ax.errorbar(spread["macs_frac"], spread["accuracy"], yerr=spread["sd"], fmt="none",
                            ecolor=palette[method], capsize=3)
            if len(dense):
                ax.axhline(dense["accuracy"].iloc[0], color="grey", ls=":", lw=1)
                ax.plot([dense["macs_frac"].iloc[0]], [dense["accuracy"].iloc[0]], "*", color="black", ms=12,
                        label="dense")
            what = {"blocks": "block-skipping methods", "channels": "channel methods",
                    "larger": "methods at " + " / ".join(sorted({f"{k} x" for _, k in larger.values()}))
                              + " the training budget"}[kind]
            trained = f"\n{budget:,.0f} training images a model" if budget == budget and kind != "larger" else ""
            ax.set(title=f"{dataset} / {backbone}: {what}{trained}", xlabel="MACs (fraction of dense)",
                   ylabel="test accuracy")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    _save(fig, path)


def latency_vs_macs(summary: pd.DataFrame, path, batch: int = 1) -> None:
    """Realized latency speedup (against the plain dense network where measured) against MACs speedup,
    one point per method x budget; diagonal drawn."""
    col = f"plain_speedup_b{batch}" if f"plain_speedup_b{batch}" in summary else f"speedup_b{batch}"
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    data = summary.dropna(subset=[col]) if col in summary else summary.iloc[:0]
    if len(data):
        sns.scatterplot(data=data, x="macs_speedup", y=col, hue="method", style="method", s=60, ax=ax)
        top = max(data["macs_speedup"].max(), data[col].max()) * 1.05
        ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="MACs = latency")
        ax.set(xlim=(0, top), ylim=(0, top))
    ax.set(xlabel="MACs speedup (dense / method)", ylabel=f"latency speedup, batch {batch}"
           + (" (vs plain dense)" if col.startswith("plain") else ""),
           title="Do saved MACs turn into time?")
    ax.grid(alpha=0.3)
    _save(fig, path)


def macs_histograms(records: dict[str, pd.DataFrame], path) -> None:
    """Per-sample MACs histogram per method (each at its mid budget)."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    frame = pd.concat([r.assign(method=m) for m, r in records.items()], ignore_index=True)
    if len(frame):
        sns.histplot(data=frame, x=frame["macs"] / 1e6, hue="method", element="step", stat="density",
                     common_norm=False, ax=ax)
    ax.set(xlabel="per-sample MACs (millions)", title="Per-sample cost at a mid budget")
    _save(fig, path)


def gate_widths(evaluations: dict[str, dict], path) -> None:
    """Per channel-gated method (at its mid budget): for every gated layer, the share of test samples that ran
    it at each tenth of its width. A collapsed policy is one dark column at the left in every row."""
    gated = {m: e for m, e in evaluations.items() if e.get("gate_histograms")}
    cols = min(max(len(gated), 1), 5)
    rows = max(1, -(-len(gated) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 4.5 * rows), squeeze=False)
    for ax in axes.flat[len(gated):]:
        ax.set_axis_off()
    for ax, (method, e) in zip(axes.flat, sorted(gated.items())):
        layers = list(e["gate_histograms"])
        shares = pd.DataFrame(0.0, index=range(len(layers)), columns=[f"{(b + 1) / 10:.1f}" for b in range(10)])
        for i, unit in enumerate(layers):
            for active, count in e["gate_histograms"][unit].items():
                share = int(active) / e["gate_widths"][unit]
                shares.iloc[i, min(9, max(0, int(share * 10 - 1e-9)))] += count / e["n"]
        # imshow, not sns.heatmap: that draws the whole figure per panel to place its tick labels (0.7 s each)
        ax.imshow(shares.to_numpy(), vmin=0, vmax=1, cmap="rocket_r", aspect="auto", interpolation="nearest")
        ax.set_xticks(range(0, 10, 2), shares.columns[::2])
        ax.set_title(f"{method} ({e['macs_frac']:.2f} of dense)", fontsize=9)
        ax.set(xlabel="active share of the layer, up to", ylabel="gated layer, input to output")
        ax.set_yticks([])
    fig.subplots_adjust(hspace=0.4)
    fig.colorbar(plt.cm.ScalarMappable(cmap="rocket_r"), ax=axes, shrink=0.6, label="share of test images")
    _save(fig, path)


def training_curves(evaluations: dict[tuple[str, int], dict], path, smooth: int = 10) -> None:
    """Per-step training curves that methods record (SANP and its ablations: cross-entropy, the L1 term,
    mean |s|, cost), one panel per curve, methods in colour, seeds by line style; running means over `smooth`."""
    recorded = {k: e["training_curves"] for k, e in sorted(evaluations.items()) if e.get("training_curves")}
    names = list(dict.fromkeys(name for curves in recorded.values() for name in curves)) or ["(none recorded)"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    methods = sorted({method for method, _ in recorded})
    palette = dict(zip(methods, sns.color_palette("tab10", max(len(methods), 1))))
    styles = ["-", "--", ":", "-."]
    for ax, name in zip(axes[0], names):
        for (method, seed), curves in recorded.items():
            if name in curves:
                values = pd.Series(curves[name], dtype=float).rolling(smooth, min_periods=1).mean()
                ax.plot(values.index, values, styles[seed % len(styles)], color=palette[method], lw=1.3,
                        label=f"{method}, seed {seed}")
        ax.set(title=name, xlabel="fine-tuning step")
        ax.grid(alpha=0.3)
    if recorded:
        axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    fig.suptitle("Training curves at each method's replicated budget (running mean over %d steps)" % smooth)
    fig.tight_layout()
    _save(fig, path)


def replicated_budget_evaluations(summary: pd.DataFrame, evaluation_path, read) -> dict:
    """For each method, every seed's evaluation at the train budget run with the most seeds (the replicated
    one; ties: the middle budget), first dataset/backbone, read by `read`: {(method, seed): evaluation}."""
    out = {}
    first = summary.iloc[0] if len(summary) else None
    for method, g in summary.groupby("method"):
        g = g[(g["dataset"] == first["dataset"]) & (g["backbone"] == first["backbone"])]
        seeds = g.groupby("train_budget")["seed"].nunique()
        budgets = sorted(seeds[seeds == seeds.max()].index)
        rows = g[g["train_budget"] == budgets[(len(budgets) - 1) // 2]].drop_duplicates("seed")
        for _, row in rows.iterrows():
            out[(method, int(row["seed"]))] = read(evaluation_path(row))
    return out


def mid_budget_records(summary: pd.DataFrame, records_path, read=pd.read_parquet) -> dict:
    """For each method, the records of its median-MACs evaluation (first dataset/backbone/seed), read by `read`."""
    out = {}
    first = summary.iloc[0] if len(summary) else None
    for method, g in summary.groupby("method"):
        g = g[(g["dataset"] == first["dataset"]) & (g["backbone"] == first["backbone"]) & (g["seed"] == g["seed"].min())]
        if g.empty:
            continue
        row = g.sort_values("macs_frac").iloc[(len(g) - 1) // 2]
        out[method] = read(records_path(row))
    return out
