"""The cost table: minutes and peak memory per method from the jobs' benchmark files."""

import pytest

from prunebench.cost import cost_table


def test_cost_table_sums_minutes_per_method_and_stage(tmp_path):
    def bench(name, seconds, rss):
        path = tmp_path / f"{name}.tsv"
        path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t{rss}\n")
        return path

    entries = [f"r20:dlp:prepare:{bench('a', 60, 100)}", f"r20:dlp:train:{bench('b', 120, 300)}",
               f"r20:dlp:train:{bench('c', 60, 200)}", f"r20:dlp:latency:{tmp_path / 'missing.tsv'}",
               f"r20:pretrain:pretrain:{bench('d', 30, 50)}"]
    table = cost_table(entries).set_index("method")
    assert table.loc["dlp", "prepare_min"] == 1 and table.loc["dlp", "train_min"] == 3
    assert table.loc["dlp", "total_min"] == 4 and table.loc["dlp", "peak_mb"] == 300 and table.loc["dlp", "jobs"] == 3
    assert table.loc["pretrain", "total_min"] == 0.5
    with pytest.raises(ValueError, match="BACKBONE:METHOD:STAGE:PATH"):
        cost_table(["dlp:train:x.tsv"])
