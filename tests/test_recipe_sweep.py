"""scripts/recipe_sweep.py end to end on the CPU: variants trained once, summarised, resumable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import tiny_config, write_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import recipe_sweep  # noqa: E402


def test_sweep_trains_each_variant_once_and_ranks_them_by_dev_bleu(tmp_path, capsys):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path, train={"max_steps": 20, "eval_every": 10}))
    out, runs = tmp_path / "sweep", tmp_path / "runs"
    argv = ["--config", str(config), "--seconds", "600", "--runs", str(runs), "--output", str(out),
            "--variant", "base", "--variant", "wide", "model.d_ff=128", "model.dropout=0.0"]
    assert recipe_sweep.main(argv) == 0
    rows = {r["variant"]: r for r in json.loads((out / "sweep.json").read_text())["variants"]}
    assert set(rows) == {"base", "wide"} and rows["wide"]["overrides"] == ["model.d_ff=128", "model.dropout=0.0"]
    assert all(r["steps"] == 20 and r["best_nll"] <= r["final_nll"] and "best_bleu" in r for r in rows.values())
    assert (runs / "wide" / "config.yaml").read_text().count("d_ff: 128") == 1  # the override reached the run
    table = (out / "sweep.md").read_text().splitlines()
    assert len(table) == 4 and "| wide | model.d_ff=128 model.dropout=0.0 | 20 |" in "\n".join(table)
    best_first = [r["variant"] for r in sorted(rows.values(), key=lambda r: -r["best_bleu"])]
    assert [line.split(" | ")[0].strip("| ") for line in table[2:]] == best_first
    mtime = (runs / "base" / "metrics.jsonl").stat().st_mtime
    capsys.readouterr()
    assert recipe_sweep.main(argv) == 0  # a second call trains nothing: both say done
    assert capsys.readouterr().out.count("done in an earlier call") == 2
    assert (runs / "base" / "metrics.jsonl").stat().st_mtime == mtime


def test_a_bad_override_stops_the_sweep_before_anything_trains(tmp_path, capsys):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path))
    argv = ["--config", str(config), "--seconds", "5", "--runs", str(tmp_path / "runs"), "--output",
            str(tmp_path / "sweep"), "--variant", "base", "--variant", "typo", "model.dropuot=0.3"]
    assert recipe_sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("recipe_sweep: error: variant typo: ") and "dropuot" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "sweep").exists()
    argv[-3:] = ["--variant", "base"]
    assert recipe_sweep.main(argv) == 2 and "variant names must differ" in capsys.readouterr().err
