"""Tests for scripts/reproduce_label_smoothing.py: statistics, table formatting and the wording of
the data-driven reading, on small synthetic inputs (plus one end-to-end run on results/ if present)."""

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("report", REPO / "scripts" / "reproduce_label_smoothing.py")
report = importlib.util.module_from_spec(SPEC)
sys.modules["report"] = report       # dataclasses look their module up while the file runs
SPEC.loader.exec_module(report)


def stat(mean, std, n=3):
    return report.Stat(mean, std, n)


def test_mean_std_is_sample_std():
    s = report.mean_std([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert math.isnan(report.mean_std([5.0]).std)


@pytest.mark.parametrize("lower_is_better, verdict", [(True, report.Verdict.WORSE), (False, report.Verdict.BETTER)])
def test_compare_direction_depends_on_metric(lower_is_better, verdict):
    change = report.compare(stat(6.0, 0.1), stat(6.5, 0.1), lower_is_better=lower_is_better)
    assert change.delta == pytest.approx(0.5)
    assert change.verdict is verdict
    assert change.beyond_spread is True


def test_compare_within_spread_uses_the_larger_std():
    change = report.compare(stat(37.0, 0.7), stat(37.5, 0.2), lower_is_better=False)
    assert change.verdict is report.Verdict.BETTER
    assert change.beyond_spread is False          # 0.5 <= max(0.7, 0.2)
    assert report.compare(stat(37.0, 0.3), stat(37.5, 0.2), lower_is_better=False).beyond_spread


def test_compare_single_seed_has_no_spread():
    change = report.compare(stat(6.0, math.nan, 1), stat(6.4, math.nan, 1), lower_is_better=False)
    assert change.beyond_spread is None
    assert "single seed" in report.describe_change("test BLEU", change, digits=2)


def test_compare_equal_means_is_unchanged():
    assert report.compare(stat(1.0, 0.1), stat(1.0, 0.1), lower_is_better=True).verdict is report.Verdict.UNCHANGED


def test_describe_change_wording():
    worse = report.describe_change("dev perplexity", report.compare(stat(4.67, 0.05), stat(4.92, 0.05),
                                                                    lower_is_better=True), digits=2)
    assert worse == ("dev perplexity is worse (4.67 → 4.92, Δ +0.25), larger than the seed spread "
                     "(std 0.05 / 0.05)")
    noise = report.describe_change("test BLEU", report.compare(stat(37.05, 0.68), stat(37.21, 0.59),
                                                               lower_is_better=False), digits=2)
    assert noise.startswith("test BLEU is better (37.05 → 37.21, Δ +0.16), within the seed spread")
    assert "noise at n = 3" in noise


@pytest.mark.parametrize("ppl_delta, bleu_delta, bleu_std, expected", [
    (+0.3, +0.5, 0.1, ["perplexity moves as in the paper (worse)", "BLEU improves as in the paper"]),
    (-0.3, +0.1, 0.5, ["perplexity moves against the paper (better", "within noise"]),
    (+0.3, -0.5, 0.1, ["BLEU moves against the paper (worse"]),
])
def test_paper_agreement(ppl_delta, bleu_delta, bleu_std, expected):
    ppl = report.compare(stat(6.0, 0.05), stat(6.0 + ppl_delta, 0.05), lower_is_better=True)
    bleu = report.compare(stat(30.0, bleu_std), stat(30.0 + bleu_delta, bleu_std), lower_is_better=False)
    text = report.paper_agreement(ppl, bleu)
    for phrase in expected:
        assert phrase in text


def test_fmt_and_fmt_stat():
    assert report.fmt(None, 2) == report.fmt(math.nan, 2) == report.DASH
    assert report.fmt(3.14159, 2) == "3.14"
    assert report.fmt_stat(stat(37.054, 0.678), 2) == "37.05 ± 0.68"


def test_markdown_table():
    table = report.markdown_table(["a", "b"], [["1", "2"], ["3", "4"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |", "| 3 | 4 |"]


def test_gain_over_last_interval_skips_a_late_extra_validation():
    valid = [{"step": 500, "bleu": 10.0}, {"step": 1000, "bleu": 20.0}, {"step": 1500, "bleu": 30.0},
             {"step": 1520, "bleu": 29.0}]
    assert report.gain_over_last_interval(valid, "bleu") == (9.0, 520)     # 1520 vs 1000, not vs 1500


def test_pool_bins_weights_by_count():
    a = {"count": [1, 0], "accuracy": [1.0, 0.0], "confidence": [0.5, 0.0]}
    b = {"count": [3, 2], "accuracy": [0.0, 0.5], "confidence": [0.9, 0.8]}
    counts, accuracy, confidence = report.pool_bins([a, b])
    assert counts == [4, 2]
    assert accuracy == pytest.approx([0.25, 0.5])
    assert confidence == pytest.approx([0.8, 0.8])


def test_parse_log_line():
    line = "step 25 | epoch 0 | loss 10.18 | tgt_tokens_per_s 23293 | peak_gpu_gb 18.25"
    assert report.parse_log_line(line) == {"step": 25.0, "epoch": 0.0, "loss": 10.18,
                                           "tgt_tokens_per_s": 23293.0, "peak_gpu_gb": 18.25}
    assert report.parse_log_line("valid step 500 | loss 3.4") is None


def test_identical_prefix():
    assert report.identical_prefix([{"a": 1}, {"a": 2}, {"a": 3}], [{"a": 1}, {"a": 2}, {"a": 4}]) == 2


LOG = """name: trainmix_base
data:
  train:
    seed: 0
train:
  seed: 1
  save_every: 250
  keep_last: 5
eval:
  dev_bleu_sentences: 500
tokenizer: reusing data/spm.model
"""


def test_log_config_value_reads_the_named_section(tmp_path):
    log = tmp_path / "train_ls0.1.log"
    log.write_text(LOG)
    assert report.log_config_value(log, "train.seed") == "1"              # not data.train.seed
    assert report.log_config_value(log, "eval.dev_bleu_sentences") == "500"
    assert report.log_config_value(log, "train.missing") is None


def test_averaged_steps_from_log_config(tmp_path):
    (tmp_path / "train_ls0.1.log").write_text(LOG)
    run = report.Run(folder=tmp_path, tag="ls0.1", eps=0.1, seed=1, train=[{"step": 1700}],
                     valid=[{"step": 1702, "nll": 1.0}])
    assert report.averaged_steps(run) == [500, 750, 1000, 1250, 1500]
    (tmp_path / "eval.out").write_text("averaged 2 checkpoints (checkpoint_step500.pt, checkpoint_step1000.pt)")
    assert report.averaged_steps(run) == [500, 1000]


def synthetic_run(eps, seed, *, nll, bleu):
    valid = [{"step": 500, "nll": nll + 1, "bleu": bleu - 5}, {"step": 1000, "nll": nll, "bleu": bleu}]
    train = [{"step": 1000, "nll": nll - 0.3, "elapsed_s": 300.0, "epoch": 10, "tgt_tokens_per_s": 1.0}]
    calib = {"nll": nll, "ece": 0.1 - eps / 2, "accuracy": 0.6, "mean_confidence": 0.7 - eps / 2,
             "mean_entropy": 1.0 + eps}
    ev = {"bleu": bleu, "chrf": 60.0, "length_ratio": 1.0}
    return report.Run(folder=Path("."), tag=f"ls{eps}_s{seed}", eps=eps, seed=seed, train=train, valid=valid, evals={"best": ev}, calibs={"best": calib})


def test_reading_follows_the_data():
    # eps 0.1: perplexity clearly worse and BLEU clearly better than eps 0 (the paper's pattern);
    # eps 0.2: BLEU up by less than the seed spread.
    runs = [synthetic_run(0.0, s, nll=1.50 + d, bleu=30.0 + d) for s, d in ((1, -0.01), (2, 0.0), (3, 0.01))]
    runs += [synthetic_run(0.1, s, nll=1.60 + d, bleu=31.0 + d) for s, d in ((1, -0.01), (2, 0.0), (3, 0.01))]
    runs += [synthetic_run(0.2, s, nll=1.60 + d, bleu=30.5 + d) for s, d in ((1, -1.0), (2, 0.0), (3, 1.0))]
    lines = report.reading(runs, {}, "300")
    eps01 = next(line for line in lines if "ε = 0.1 vs 0" in line)
    eps02 = next(line for line in lines if "ε = 0.2 vs 0" in line)
    assert "dev perplexity is worse" in eps01 and "Test BLEU is better" in eps01
    assert "moves as in the paper (worse)" in eps01 and "BLEU improves as in the paper" in eps01
    assert re.search(r"Test BLEU is better \([^)]*\), within the seed spread", eps02)
    assert "within noise" in eps02
    assert any("rising at the last validation in 9 of 9" in line for line in lines)


@pytest.mark.skipif(not (REPO / "results" / "multi30k").is_dir(), reason="needs the measured results/")
def test_report_renders_from_real_results(tmp_path):
    results = REPO / "results"
    m30k = report.load_track(results / "multi30k")
    newstest = {v: report.load_track(results / f"trainmix_{v}") for v in ("v1", "v2")}
    text = report.render(results, m30k, newstest, "figures",
                         ["m30k_dev_nll.png", "m30k_dev_bleu.png", "m30k_reliability.png",
                          "trainmix_dev_nll.png", "trainmix_dev_bleu.png"])
    assert len(m30k) == 9 and "## Reading" in text and "nan" not in text
