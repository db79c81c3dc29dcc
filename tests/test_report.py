"""Tests for scripts/reproduce_label_smoothing.py and its helpers (scripts/report_common.py,
scripts/report_peer.py): statistics, loading, table formatting and the wording of the data-driven
reading, on small synthetic inputs written to a temporary folder (plus one end-to-end run on
results/ if present)."""

import dataclasses
import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("report", REPO / "scripts" / "reproduce_label_smoothing.py")
report = importlib.util.module_from_spec(SPEC)
sys.modules["report"] = report       # dataclasses look their module up while the file runs
SPEC.loader.exec_module(report)      # puts scripts/ on sys.path for its helper modules

import report_common as common  # noqa: E402
import report_peer as peer_report  # noqa: E402


def stat(mean, std, n=3):
    return common.Stat(mean, std, n)


def test_mean_std_is_sample_std():
    s = common.mean_std([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert math.isnan(common.mean_std([5.0]).std)


@pytest.mark.parametrize("lower_is_better, verdict", [(True, common.Verdict.WORSE), (False, common.Verdict.BETTER)])
def test_compare_direction_depends_on_metric(lower_is_better, verdict):
    change = common.compare(stat(6.0, 0.1), stat(6.5, 0.1), lower_is_better=lower_is_better)
    assert change.delta == pytest.approx(0.5)
    assert change.verdict is verdict
    assert change.beyond_spread is True


def test_compare_within_spread_uses_the_larger_std():
    change = common.compare(stat(37.0, 0.7), stat(37.5, 0.2), lower_is_better=False)
    assert change.verdict is common.Verdict.BETTER
    assert change.beyond_spread is False          # 0.5 <= max(0.7, 0.2)
    assert common.compare(stat(37.0, 0.3), stat(37.5, 0.2), lower_is_better=False).beyond_spread


def test_compare_single_seed_has_no_spread():
    change = common.compare(stat(6.0, math.nan, 1), stat(6.4, math.nan, 1), lower_is_better=False)
    assert change.beyond_spread is None
    assert "single seed" in common.describe_change("test BLEU", change, digits=2)


def test_compare_equal_means_is_unchanged():
    assert common.compare(stat(1.0, 0.1), stat(1.0, 0.1), lower_is_better=True).verdict is common.Verdict.UNCHANGED


def test_describe_change_wording():
    worse = common.describe_change("dev perplexity", common.compare(stat(4.67, 0.05), stat(4.92, 0.05),
                                                                    lower_is_better=True), digits=2)
    assert worse == ("dev perplexity is worse (4.67 → 4.92, Δ +0.25), larger than the seed spread "
                     "(std 0.05 / 0.05)")
    noise = common.describe_change("test BLEU", common.compare(stat(37.05, 0.68), stat(37.21, 0.59),
                                                               lower_is_better=False), digits=2)
    assert noise.startswith("test BLEU is better (37.05 → 37.21, Δ +0.16), within the seed spread")
    assert "noise at n = 3" in noise


@pytest.mark.parametrize("ppl_delta, bleu_delta, bleu_std, expected", [
    (+0.3, +0.5, 0.1, ["perplexity moves as in the paper (worse)", "BLEU improves as in the paper"]),
    (-0.3, +0.1, 0.5, ["perplexity moves against the paper (better", "within noise"]),
    (+0.3, -0.5, 0.1, ["BLEU moves against the paper (worse"]),
])
def test_paper_agreement(ppl_delta, bleu_delta, bleu_std, expected):
    ppl = common.compare(stat(6.0, 0.05), stat(6.0 + ppl_delta, 0.05), lower_is_better=True)
    bleu = common.compare(stat(30.0, bleu_std), stat(30.0 + bleu_delta, bleu_std), lower_is_better=False)
    text = report.paper_agreement(ppl, bleu)
    for phrase in expected:
        assert phrase in text


def test_fmt_and_fmt_stat():
    assert common.fmt(None, 2) == common.fmt(math.nan, 2) == common.DASH
    assert common.fmt(3.14159, 2) == "3.14"
    assert common.fmt_stat(stat(37.054, 0.678), 2) == "37.05 ± 0.68"


def test_markdown_table():
    table = common.markdown_table(["a", "b"], [["1", "2"], ["3", "4"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |", "| 3 | 4 |"]


def test_gain_over_last_interval_skips_a_late_extra_validation():
    valid = [{"step": 500, "bleu": 10.0}, {"step": 1000, "bleu": 20.0}, {"step": 1500, "bleu": 30.0},
             {"step": 1520, "bleu": 29.0}]
    assert common.gain_over_last_interval(valid, "bleu") == (9.0, 520)     # 1520 vs 1000, not vs 1500


def test_pool_bins_weights_by_count():
    a = {"count": [1, 0], "accuracy": [1.0, 0.0], "confidence": [0.5, 0.0]}
    b = {"count": [3, 2], "accuracy": [0.0, 0.5], "confidence": [0.9, 0.8]}
    counts, accuracy, confidence = common.pool_bins([a, b])
    assert counts == [4, 2]
    assert accuracy == pytest.approx([0.25, 0.5])
    assert confidence == pytest.approx([0.8, 0.8])


def test_parse_log_line():
    line = "step 25 | epoch 0 | loss 10.18 | tgt_tokens_per_s 23293 | peak_gpu_gb 18.25"
    assert common.parse_log_line(line) == {"step": 25.0, "epoch": 0.0, "loss": 10.18,
                                           "tgt_tokens_per_s": 23293.0, "peak_gpu_gb": 18.25}
    assert common.parse_log_line("valid step 500 | loss 3.4") is None


def test_identical_prefix():
    assert common.identical_prefix([{"a": 1}, {"a": 2}, {"a": 3}], [{"a": 1}, {"a": 2}, {"a": 4}]) == 2


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
    assert common.log_config_value(log, "train.seed") == "1"              # not data.train.seed
    assert common.log_config_value(log, "eval.dev_bleu_sentences") == "500"
    assert common.log_config_value(log, "train.missing") is None


def test_averaged_steps_from_log_config(tmp_path):
    (tmp_path / "train_ls0.1.log").write_text(LOG)
    run = common.Run(folder=tmp_path, tag="ls0.1", eps=0.1, seed=1, train=[{"step": 1700}],
                     valid=[{"step": 1702, "nll": 1.0}])
    assert common.averaged_steps(run) == [500, 750, 1000, 1250, 1500]
    (tmp_path / "eval.out").write_text("averaged 2 checkpoints (checkpoint_step500.pt, checkpoint_step1000.pt)")
    assert common.averaged_steps(run) == [500, 1000]


def synthetic_run(eps, seed, *, nll, bleu):
    valid = [{"step": 500, "nll": nll + 1, "bleu": bleu - 5}, {"step": 1000, "nll": nll, "bleu": bleu}]
    train = [{"step": 1000, "nll": nll - 0.3, "elapsed_s": 300.0, "epoch": 10, "tgt_tokens_per_s": 1.0}]
    calib = {"nll": nll, "ece": 0.1 - eps / 2, "accuracy": 0.6, "mean_confidence": 0.7 - eps / 2,
             "mean_entropy": 1.0 + eps}
    ev = {"bleu": bleu, "chrf": 60.0, "length_ratio": 1.0}
    return common.Run(folder=Path("."), tag=f"ls{eps}_s{seed}", eps=eps, seed=seed, train=train, valid=valid, evals={"best": ev}, calibs={"best": calib})


def test_reading_follows_the_data():
    # eps 0.1: perplexity clearly worse and BLEU clearly better than eps 0 (the paper's pattern);
    # eps 0.2: BLEU up by less than the seed spread.
    runs = [synthetic_run(0.0, s, nll=1.50 + d, bleu=30.0 + d) for s, d in ((1, -0.01), (2, 0.0), (3, 0.01))]
    runs += [synthetic_run(0.1, s, nll=1.60 + d, bleu=31.0 + d) for s, d in ((1, -0.01), (2, 0.0), (3, 0.01))]
    runs += [synthetic_run(0.2, s, nll=1.60 + d, bleu=30.5 + d) for s, d in ((1, -1.0), (2, 0.0), (3, 1.0))]
    lines = report.reading(runs, "300")
    eps01 = next(line for line in lines if "ε = 0.1 vs 0" in line)
    eps02 = next(line for line in lines if "ε = 0.2 vs 0" in line)
    assert "dev perplexity is worse" in eps01 and "Test BLEU is better" in eps01
    assert "moves as in the paper (worse)" in eps01 and "BLEU improves as in the paper" in eps01
    assert re.search(r"Test BLEU is better \([^)]*\), within the seed spread", eps02)
    assert "within noise" in eps02
    assert any("rising at the last validation in 9 of 9" in line for line in lines)



# ---------------------------------------------------------------- a synthetic v3-style track on disk

TRACK_LOG = """name: trainmix_base
model:
  dropout: 0.3
  norm_first: true
optim:
  lr: 0.0007
  warmup_steps: 1000
train:
  seed: 1
  max_time: 440.0
  max_tokens: 25000
  eval_every: 500
  save_every: 500
  keep_last: 5
eval:
  dev_bleu_sentences: 500
model: 60,524,544 parameters; device cuda, precision bf16, world size 1
"""
SIGNATURES = {"bleu_signature": "nrefs:1|tok:13a", "chrf_signature": "nrefs:1|nc:6"}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def bins(shift):
    return {"count": [10, 30], "accuracy": [0.2, 0.8 - shift], "confidence": [0.25, 0.9 - shift]}


def write_arm(folder, eps, *, steps, final_nll, bleu, length_ratio):
    """metrics (train every 250 steps, validations at 500, 1000 and the end; the interval holding a
    validation at half speed), train log, eval and calibration files of one translate arm."""
    train = [{"kind": "train", "step": s, "epoch": s // 150, "nll": 3.0 + 1000 / s + eps, "grad_norm": 0.5,
              "tgt_tokens_per_s": 40_000.0 if s in (750, 1250) else 80_000.0, "elapsed_s": s * 0.25,
              "peak_gpu_gb": 9.9} for s in range(250, steps, 250)]
    valid = [{"kind": "valid", "step": s, "nll": nll, "ppl": math.exp(nll), "tokens": 84035, "bleu": b}
             for s, nll, b in ((500, 6.5 + eps, 0.4), (1000, 5.4 + eps, 1.8), (steps, final_nll, bleu - 0.1))]
    tag = f"ls{eps}"
    write_jsonl(folder / f"metrics_{tag}.jsonl", train + valid)
    (folder / f"train_{tag}.log").write_text(TRACK_LOG)
    for name, factor in (("best", 1.0), ("avg", 0.4)):
        ev = {"bleu": bleu * factor, "chrf": 30.0 * factor, "length_ratio": length_ratio / factor,
              "sentences_per_second": 360.0 * factor, "sentences": 3003, **SIGNATURES}
        (folder / f"eval_{name}_{tag}.json").write_text(json.dumps(ev))
        calib = {"nll": final_nll / factor, "ece": 0.06 - eps / 5, "accuracy": 0.317, "mean_confidence": 0.37 - eps / 3,
                 "mean_entropy": 3.6 + 8 * eps, "bins": bins(eps)}
        (folder / f"calib_{name}_{tag}.json").write_text(json.dumps(calib))


def write_peer(folder, *, steps=1473, best_nll=3.96, bleu=8.08):
    """peer_marian.json and metrics_peer_marian.jsonl; its rate doubles in the six intervals that
    overlap the arms' validations (125-187.5 s and 250-312.5 s on the arms' clock)."""
    train = [{"kind": "train", "step": s, "epoch": s // 150, "nll": 2.8 + 1000 / s, "grad_norm": 0.4,
              "tgt_tokens_per_s": 140_000.0 if s in (500, 600, 700, 1000, 1100, 1200) else 70_000.0, "elapsed_s": s * 0.25 + 12.5}
             for s in range(100, steps, 100)]
    valid = [{"kind": "valid", "step": s, "nll": nll, "tokens": 84035}
             for s, nll in ((500, 6.3), (1000, 4.96), (steps, best_nll))]
    write_jsonl(folder / "metrics_peer_marian.jsonl", train + valid)
    summary = {
        "steps": steps, "parameters": 61_571_072, "budget": {"max_time": 440.0},
        "recipe": {"model": "MarianMTModel, post-norm, tied embeddings"},
        "environment": {"transformers": "5.17.0"},
        "config": {"train": {"label_smoothing": 0.1}, "optim": {"lr": 7e-4, "warmup_steps": 1000},
                   "model": {"max_positions": 1024, "d_model": 512}},
        "test": {"bleu": bleu, "chrf": 34.6, "length_ratio": 1.041, "sentences_per_second": 211.9, "beam": 4,
                 "lenpen": 0.6, "lenpen_formula": "logprob / L^alpha (HF), not GNMT", "sentences": 3003,
                 **SIGNATURES},
    }
    (folder / "peer_marian.json").write_text(json.dumps(summary))


@pytest.fixture
def track(tmp_path):
    """(arms, peer) of a v3-like folder: ε = 0.1 ends at 1554 (NLL 4.39, BLEU 6.00), ε = 0 at 1553
    (NLL 4.36, BLEU 5.27), the peer at 1473 (NLL 3.96, BLEU 8.08)."""
    write_arm(tmp_path, 0.1, steps=1554, final_nll=4.39, bleu=6.00, length_ratio=1.03)
    write_arm(tmp_path, 0.0, steps=1553, final_nll=4.36, bleu=5.27, length_ratio=1.23)
    (tmp_path / "eval.out").write_text("averaged 3 checkpoints (checkpoint_step500.pt, checkpoint_step1000.pt, "
                                       "checkpoint_step1500.pt) into avg.pt\n")
    write_peer(tmp_path)
    return common.load_track(tmp_path), common.load_peer(tmp_path)


BENCH = common.Bench(Path("results/bench/train_a.json"), {"translate": 260_000.0, "hf_marian": 100_000.0},
                     {"dropout": 0.1})


def test_load_track_and_peer(track, tmp_path):
    runs, peer = track
    assert [(r.eps, r.seed, r.steps, r.best_step) for r in runs] == [(0.0, 1, 1553, 1553), (0.1, 1, 1554, 1554)]
    assert set(runs[0].evals) == set(runs[0].calibs) == {"best", "avg"}
    assert common.averaged_steps(runs[0]) == [500, 1000, 1500]
    assert (peer.steps, peer.norm, peer.test["bleu"]) == (1473, "post-norm", 8.08)
    assert [r["step"] for r in peer.valid] == [500, 1000, 1473] and len(peer.train) == 14
    assert common.load_peer(tmp_path / "nowhere") is None


def test_load_bench_skips_failed_rows(tmp_path):
    rows = [{"system": "translate", "tgt_tokens_per_s": 3.0, "error": None},
            {"system": "translate_compiled", "tgt_tokens_per_s": 0.0, "error": "OOM"}]
    (tmp_path / "b.json").write_text(json.dumps({"rows": rows, "settings": {"dropout": 0.1}}))
    bench = common.load_bench(tmp_path / "b.json")
    assert bench.rates == {"translate": 3.0} and bench.settings["dropout"] == 0.1


def test_log_parameters_and_formatting(tmp_path):
    (tmp_path / "t.log").write_text(TRACK_LOG)
    assert common.log_parameters(tmp_path / "t.log") == 60_524_544
    assert common.fmt_lr(7e-4) == "7e-4" and common.fmt_lr(7.5e-4) == "7.5e-4" and common.fmt_lr(1e-3) == "1e-3"
    assert common.fmt_int(281941.95) == "281,942" and common.fmt_int(None) == common.DASH


def test_shared_steps_and_value_at_step():
    a = [{"step": 500, "nll": 6.5}, {"step": 1000, "nll": 5.4}, {"step": 1554, "nll": 4.39}]
    b = [{"step": 500, "nll": 6.3}, {"step": 1000, "nll": 4.96}, {"step": 1473, "nll": 3.96}]
    assert common.shared_steps(a, b) == [500, 1000]
    assert common.value_at_step(b, 1000, "nll") == 4.96 and common.value_at_step(b, 1500, "nll") is None


def test_systems_and_peer_table(track):
    runs, peer = track
    group = peer_report.systems(runs, peer)
    assert [(g.name, g.norm, g.steps, g.parameters) for g in group] == [
        ("translate, ε = 0.1", "pre-norm", 1554, 60_524_544), ("translate, ε = 0.0", "pre-norm", 1553, 60_524_544),
        ("HF MarianMTModel, ε = 0.1", "post-norm", 1473, 61_571_072)]
    assert peer_report.in_budget_steps(group) == [500, 1000]          # not the end-of-budget validations
    lines = peer_report.peer_table(group).splitlines()
    assert "dev NLL at step 500 | dev NLL at step 1000 | best dev NLL (step)" in lines[0]
    peer_row = lines[-1].split(" | ")
    assert peer_row[:6] == ["| HF MarianMTModel, ε = 0.1", "post-norm", "61,571,072", "1473", "440", "70,000"]
    assert peer_row[6:10] == ["6.300", "4.960", "3.960 (1473)", f"{math.exp(3.96):.1f}"]
    assert peer_row[10:] == ["8.08", "34.60", "1.041", "211.9 |"]
    assert lines[2].split(" | ")[5] == "80,000"                       # median after the first 10%
    assert "Parameters differ by 1,046,528" in peer_report.parameter_note(group, peer)


def test_speed_ratio_table_reads_the_bench(track):
    runs, peer = track
    rows = peer_report.speed_ratio_table(peer_report.systems(runs, peer), BENCH).splitlines()
    assert rows[0] == "|  | translate (ε = 0.1 / 0.0) | HF MarianMTModel, ε = 0.1 | translate / peer |"
    assert rows[2].endswith("| 260,000 | 100,000 | 2.60× |")
    assert rows[3].endswith("| 80,000 / 80,000 | 70,000 | 1.14× / 1.14× |")
    assert rows[4].endswith("| 1554 / 1553 | 1473 | 1.05× / 1.05× |")


def test_peer_ahead_needs_every_measure(track):
    runs, peer = track
    group = peer_report.systems(runs, peer)
    assert peer_report.peer_ahead(group)
    worse_bleu = peer_report.System(**{**group[-1].__dict__, "test": {**group[-1].test, "bleu": 5.5}})
    assert not peer_report.peer_ahead(group[:-1] + [worse_bleu])


def test_peer_rate_during_our_validations(track):
    runs, peer = track
    windows = peer_report.validation_windows(runs[0])
    assert windows == [(125.0, 187.5), (250.0, 312.5)]
    inside, outside = peer_report.rates_during(peer.train, windows)
    assert inside == [140_000.0] * 6 and outside == [70_000.0] * 7


def test_peer_reading_wording(track):
    runs, peer = track
    group = peer_report.systems(runs, peer)
    smoke = common.Smoke(train=[{"step": 700, "nll": 5.9, "grad_norm": 0.5, "lr": 7e-4},
                                {"step": 750, "nll": 6.5, "grad_norm": 34.2, "lr": 7.5e-4},
                                {"step": 775, "nll": 7.0, "grad_norm": 0.4, "lr": 7.75e-4}],
                         valid=[{"step": 300, "nll": 7.46}, {"step": 600, "nll": 7.41}, {"step": 775, "nll": 7.67}],
                         test={})
    per_step, shared_gpu, norm = peer_report.peer_reading(group, runs, peer, BENCH, smoke)
    assert "Best dev NLL 3.960 vs 4.390 / 4.360" in per_step
    assert "at step 500 6.300 vs 6.600 / 6.500; at step 1000 4.960 vs 5.500 / 5.400" in per_step
    assert "learned clearly more per step than our pre-norm recipe" in per_step
    assert "2.60× as many target tokens/s" in shared_gpu and "(1.14 / 1.14×)" in shared_gpu
    assert "in its 6 logged intervals that overlap" in shared_gpu
    assert "median 140,000 tokens/s, against 70,000 in the other 7" in shared_gpu and "v4 measures that" in shared_gpu
    assert "spiked at step 750 (logged grad norm 34.2" in norm and "the lr still rising in warm-up" in norm
    assert "dev NLL was only 7.46 / 7.41 (steps 300, 600)" in norm


def test_equal_time_headline_and_reading(track):
    runs, peer = track
    eps0, eps01 = (peer_report.our_system(r) for r in runs)
    group = [eps01, peer_report.peer_system(peer)]
    head = peer_report.equal_time_headline(group, eps0)
    assert "trained 1554 steps and the Hugging Face MarianMTModel peer (post-norm, ε = 0.1) 1473" in head
    assert "(lowest dev NLL: step 1554 and step 1473) score test BLEU 6.00 (chrF 30.00) and 8.08 (chrF 34.60)" in head
    assert "-2.08 BLEU for translate at equal GPU time, with 1.05× the peer's steps" in head
    assert "500: 6.600 vs 6.300; 1000: 5.500 vs 4.960" in head
    assert "median 80,000 vs 70,000 target tokens/s" in head and "ε = 0.0, trained for the same 1553" in head
    bullet = peer_report.equal_time_bullet(group, eps0, BENCH)
    assert "the peer ahead (one seed each; -2.08 BLEU)" in bullet and "2.60×" in bullet
    assert "greedy dev BLEU on the first 500 dev sentences, every 500 steps" in bullet
    assert "end-of-run validation" not in bullet                    # here the last validation is the best
    assert "still falling fast (5.50 → 4.39 from step 1000 to 1554)" in bullet
    # An end-of-run validation worse than the periodic best in both arms is said, with the steps.
    worse = [peer_report.System(**{**g.__dict__, "valid": g.valid + [{"step": g.steps + 28, "nll": 9.9}],
                                   "steps": g.steps + 28}) for g in (eps01, eps0)]
    note = peer_report.end_of_run_note(worse[0], worse[1], group[-1])
    assert "end-of-run validation (step 1582) was worse than the one at step 1554 in both arms" in note
    assert "28 steps older than its last" in note


def test_eps_reading_single_seed(track):
    runs, _ = track
    m30k = [synthetic_run(eps, s, nll=1.5 + eps + d, bleu=30.0 + d) for eps in (0.0, 0.1)
            for s, d in ((1, -0.01), (2, 0.0), (3, 0.01))]
    flipped = [common.Run(**{**r.__dict__, "evals": {"best": {**r.evals["best"], "bleu": 7.0 - r.eps * 10}}})
               for r in runs]
    text = report.eps_reading("v3", {"v1": flipped, "v3": runs}, m30k)
    assert "test BLEU 2.40 vs 2.11 for the averages (the same steps in both arms)" in text
    assert "6.00 vs 5.27 for the best checkpoints (steps 1554 / 1553)" in text
    assert "+0.73 (v3)" in text and "-1.00 (v1)" in text and "its sign changed from run to run" in text
    assert "std over seeds was up to 0.01, against which the +0.29 of the averages is larger than that spread" in text
    assert "lower best dev NLL in 2 of 2 versions;" in text
    assert ("lowered the dev ECE of the best checkpoint in every calibrated version (v1, v3: v1: 0.0600 → 0.0400; "
            "v3: 0.0600 → 0.0400") in text
    assert "Choosing the checkpoint by dev NLL" not in text       # neither arm overfit
    overfit = with_eps0_overfitting(runs)
    text = report.eps_reading("v3", {"v3": overfit}, m30k)
    assert "lower best dev NLL in 0 of 1 versions, not in the longest (v3);" in text
    assert ("takes ε = 0's from step 1000, before it overfit, while its greedy dev BLEU had yet to peak (1.80 "
            "there, 5.17 at the end)") in text
    peaked = common.Run(Path("."), "x", 0.0, 1, [], [{"step": s, "nll": n, "bleu": b} for s, n, b in
                                                     ((500, 5.0, 0.4), (1000, 4.0, 1.8), (1500, 4.2, 3.0), (2000, 4.5, 2.0))])
    assert report.bleu_after_best(peaked) == (True, "1.80 there, 3.00 at its highest (step 1500), 2.00 at the end")
    peaked_before = common.Run(Path("."), "x", 0.0, 1, [], [{"step": s, "nll": n, "bleu": b} for s, n, b in
                                                            ((500, 5.0, 2.5), (1000, 4.0, 1.8), (1500, 4.2, 1.5))])
    assert report.bleu_after_best(peaked_before) == (False, "1.80 there, 1.50 at the end")


def with_eps0_overfitting(runs):
    """The track's arms with ε = 0's dev NLL lowest at step 1000 (4.50) and 4.70 at the end."""
    eps0, eps01 = runs
    valid = [dict(v) for v in eps0.valid]
    valid[1]["nll"], valid[-1]["nll"] = 4.50, 4.70
    return [common.Run(**{**eps0.__dict__, "valid": valid}), eps01]


def test_eps_headline_and_overfitting(track):
    runs, _ = track
    head = report.eps_headline("v5", runs)
    assert "newstest run v5: Transformer-base on the 257k-pair train-mix, one seed, 1554 steps per arm" in head
    assert f"{runs[0].train_seconds:.0f} s of training for ε = 0.1, not the issue's ~20 minutes" in head
    assert ("test BLEU 2.40 vs 2.11 (+0.29) for the average of the checkpoints of steps 500, 1000, 1500 (the same "
            "steps in both arms), and 6.00 vs 5.27 (+0.73) for the checkpoints of lowest dev NLL (steps 1554 / 1553)") in head
    assert "Dev perplexity (best checkpoint) 80.6 vs 78.3: higher with smoothing, as in the paper" in head
    assert not any(report.overfits(r) for r in runs)
    overfit = with_eps0_overfitting(runs)
    assert [report.overfits(r) for r in overfit] == [True, False]
    head = report.eps_headline("v5", overfit)
    assert "80.6 vs 90.0: lower with smoothing, against the paper (newstest2013 PPL 4.67 → 4.92)" in head
    assert "and ε = 0 then overfit these 257k pairs (its dev NLL lowest at step 1000, rising after)" in head
    assert "lower one at every validation" not in head  # the arms share steps 500 and 1000, where ε = 0 is lower
    assert report.lower_since(overfit[0], overfit[1]) == 500 and report.lower_since(overfit[1], overfit[0]) is None
    curve = lambda *nlls: common.Run(Path("."), "x", 0.0, 1, [], [{"step": 500 * (i + 1), "nll": n}  # noqa: E731
                                                                    for i, n in enumerate(nlls)])
    assert report.lower_since(curve(6.0, 5.0, 4.0), curve(5.9, 5.1, 4.1)) == 1000
    assert report.lower_since(curve(6.0, 5.0, 4.2), curve(5.9, 5.1, 4.1)) is None
    # training NLL: the mean of the (up to 5) logged intervals up to each step: 250..1000 and 500..1500
    assert report.dev_nll_course(overfit[0]) == (
        "ε = 0.0: dev NLL lowest at step 1000 (4.500), 4.700 at the end, while the training-batch NLL (dropout on; "
        "mean of the 5 logged intervals up to each) went 5.08 → 4.16")
    assert report.dev_nll_course(overfit[1]) == "ε = 0.1: dev NLL lowest at the end (4.390)"
    eps01_valid = [dict(v) for v in overfit[1].valid]
    eps01_valid[1]["nll"], eps01_valid[-1]["nll"] = 4.40, 4.55
    both = [overfit[0], dataclasses.replace(overfit[1], valid=eps01_valid)]
    assert ("both then overfit these 257k pairs, ε = 0 1.3× as much (dev NLL +0.15 / +0.20 from the best checkpoint "
            "to the end)") in report.eps_headline("v6", both)


def test_recipe_section_compares_recipes_at_shared_steps(track):
    runs, _ = track
    better = [common.Run(**{**r.__dict__, "valid": [{**v, "nll": v["nll"] - 0.5, "bleu": v["bleu"] + 1}
                                                    for v in r.valid]}) for r in runs]
    smoke = common.Smoke(train=[], valid=[{"step": 300.0, "nll": 7.456}, {"step": 600.0, "nll": 7.414}], test={})
    text = "\n".join(report.recipe_section({"v3": runs, "v4": better, "v5": better}, smoke))
    lines = text.splitlines()
    assert "| run | dev NLL @ 500 | dev NLL @ 1000 | dev BLEU @ 500 | dev BLEU @ 1000 |" in text  # before either stopped
    assert [line for line in lines if line.startswith("| pre-norm")] == [
        "| pre-norm, fairseq init, dropout 0.3 | v3 | 6.600 | 5.500 | 0.40 | 1.80 |",
        "| pre-norm, fairseq init, dropout 0.3 | v4 | 6.100 | 5.000 | 1.40 | 2.80 |"]
    assert "dev NLL 7.46 / 7.41 at steps 300, 600" in text and "leads at every shared step" in text
    assert "differs from v4 by up to 0.000 nats" in text and "overfits" not in text
    rerun = [common.Run(**{**r.__dict__, "valid": [{**v, "nll": v["nll"] + 0.04} for v in r.valid]}) for r in better]
    text = "\n".join(report.recipe_section({"v3": better, "v4": runs, "v5": rerun}, smoke))
    assert "does not lead at every step" in text and "differs from v4 by up to 0.460 nats" in text


def test_average_caveat_and_speed_note(track):
    runs, _ = track
    caveat = report.average_caveat(runs)
    assert caveat.startswith("Averaging the checkpoints of steps 500, 1000, 1500 (training ended at 1554 / 1553) hurts")
    assert "dev NLL at step 500: 6.60 / 6.50, against 4.39 / 4.36 at the best" in caveat
    near = [common.Run(**{**r.__dict__, "valid": [{**v, "nll": 4.45} if v["step"] == 500 else v for v in r.valid]})
            for r in runs]
    assert "far behind" not in report.average_caveat(near)         # within 0.1 nats of the best
    note = report.speed_note({"v3": runs})
    assert note.startswith("The averaged checkpoint decoded slower than the best one in 2 of 2 arms and wrote "
                           "longer outputs in 2; the two go together in every arm")
    faster = [common.Run(**{**r.__dict__, "evals": {**r.evals, "avg": {**r.evals["avg"], "sentences_per_second": 999}}})
              if r.eps == 0.0 else r for r in runs]
    assert "in 1 of 2 arms and wrote longer outputs in 2; the two go together except in v3 ε = 0.0." in \
        report.speed_note({"v3": faster})


def test_newstest_table_has_both_checkpoints(track):
    runs, _ = track
    rows = report.newstest_table(runs).splitlines()[2:]
    assert [r.split(" | ")[3] for r in rows] == ["best (step 1554)", "avg of steps 500, 1000, 1500",
                                                 "best (step 1553)", "avg of steps 500, 1000, 1500"]
    assert rows[0].split(" | ")[7] == "6.00" and rows[0].split(" | ")[10] == "0.0400"


@pytest.mark.skipif(not (REPO / "results" / "trainmix_v5" / "eval_avg_ls0.0.json").is_file(),
                    reason="needs the measured results/")
def test_report_renders_from_real_results():
    results = REPO / "results"
    m30k = common.load_track(results / "multi30k")
    newstest = {v: common.load_track(results / f"trainmix_{v}") for v in ("v1", "v2", "v3", "v4", "v5")}
    peers = {v: common.load_peer(results / f"trainmix_{v}") for v in ("v3", "v4")}
    bench = common.load_bench(results / report.BENCH_TRAIN)
    smoke = common.load_smoke(results / "smoke")
    figures = ["m30k_dev_nll.png", "m30k_dev_bleu.png", "m30k_reliability.png", "trainmix_dev_nll.png",
               "trainmix_dev_bleu.png", "trainmix_v3_reliability.png", "trainmix_v4_reliability.png",
               "trainmix_v5_reliability.png"]
    v6 = common.load_track(results / "trainmix_v6")
    text = report.render(m30k, newstest, v6, peers, bench, smoke, "figures", figures)
    assert len(m30k) == 9 and "## Reading" in text and "nan" not in text
    assert "### Peer baseline at equal wall time (v3)" in text and "figures/trainmix_v3_reliability.png" in text
    group = peer_report.systems(newstest["v3"], peers["v3"])
    assert [g.steps for g in group] == [1554, 1553, 1473]
    assert f"{bench.rates['translate'] / bench.rates['hf_marian']:.2f}×" == "2.60×"
    assert "| HF MarianMTModel, ε = 0.1 | post-norm | 61,571,072 | 1473 | 440 |" in text
    assert "### Peer baseline at equal GPU time (v4)" in text and "figures/trainmix_v4_reliability.png" in text
    assert "| HF MarianMTModel, ε = 0.1 | post-norm | 61,571,072 | 2057 | 280 |" in text
    assert "translate ε = 0 for the same 2028 steps" in text
    assert "### v5: the v4 recipe" in text and "figures/trainmix_v5_reliability.png" in text
    assert "translate's loop became 1.52× faster on the same recipe (v5: 279,651 vs 183,727" in text
    assert "then ε = 0 for the same 5137 steps" in text and "EPS=0.0 STEPS=5137" in text
    assert "| post-norm, hf init, dropout 0.3 | v4 | 6.279 | 4.950 | 3.983 |" in text
    # v6's ε = 0.1 arm reran v5's first steps on another machine with the same numbers
    assert "ε = 0.1: 112 of the 112 training and validation records it shares with v5's arm (up to step 5100)" in text
    assert "| 0.1 | 13664 | 1203 | NVIDIA H100 80GB HBM3 | avg of steps 12500, 13000, 13500 | 3.548 |" in text
    # its ε = 0 arm ran on an H200: named, and its drift from v5's H100 run measured
    assert "except v6's ε = 0.0 arm, on one NVIDIA H200 (the same torch)." in text
    assert "ε = 0.0: 0 of the 112 training and validation records it shares with v5's arm" in text
    assert "its best checkpoints (steps 3000 / 3000) scored test BLEU 13.05 vs 12.73" in text
    assert "**Label-smoothing headline (newstest run v6:" in text and "test BLEU 14.57 vs 13.42 (+1.15)" in text


def test_same_numbers_compares_the_numbers_of_shared_steps_not_the_clocks(track):
    runs, _ = track
    run = runs[0]
    rerun = dataclasses.replace(run, train=[{**r, "elapsed_s": r.get("elapsed_s", 0) + 9.0} for r in run.train])
    shared = len(run.train) + len(run.valid)
    assert report.same_numbers(rerun, run) == (shared, shared)  # other clocks, the same numbers
    drifted = dataclasses.replace(rerun, valid=[{**run.valid[0], "nll": run.valid[0]["nll"] + 1e-9}, *run.valid[1:]])
    assert report.same_numbers(drifted, run) == (shared - 1, shared)
    shorter = dataclasses.replace(run, train=run.train[:2], valid=[])
    assert report.same_numbers(shorter, run) == (2, 2)


def test_v6_section_waits_for_its_second_arm_then_compares_both(track):
    runs, _ = track
    one = report.v6_section(runs[1:], runs, {})  # ε = 0.1 alone (arms() puts it first)
    assert one[0].startswith("### v6 (ε = 0 to run)") and "runs in a later one, from the same code" in one[2]
    assert "EPS=0.0" not in "\n".join(one) and "Averaging the checkpoints" not in "\n".join(one)
    both = "\n".join(report.v6_section(runs, runs, {"trainmix_v6_reliability.png": "figures/x.png"}))
    assert both.startswith("### v6 (the latest)") and "ε = 0 for the same 1554 steps from the same code" in both
    assert "EPS=0.0 STEPS=1554 MODE=resume" in both and "STEPS=1554 MODE=resume OUT=$W RUNS=/tmp/runs bash scripts/gpu_ls_trainmix.sh 540" in both and "Averaging the checkpoints" in both
    shared = len(runs[0].train) + len(runs[0].valid)
    assert f"ε = 0.0: {shared} of the {shared} training and validation records" in both  # compared with itself
    assert "![Newstest v6 reliability](figures/x.png)" in both


def test_an_arm_rerun_on_another_gpu_kind_is_named_and_its_drift_measured(track, tmp_path):
    runs, _ = track
    eps0, eps01 = runs
    (tmp_path / "gpu.txt").write_text("name, driver_version\nNVIDIA H100 80GB HBM3, 580.159.04\n")
    (tmp_path / "gpu_ls0.0.txt").write_text("NVIDIA H200, 143771 MiB\n")  # an arm's own file, without a header
    earlier_dir = tmp_path / "v5"
    earlier_dir.mkdir()
    (earlier_dir / "gpu.txt").write_text("NVIDIA H100 80GB HBM3\n")
    assert [common.run_gpu(r) for r in runs] == ["NVIDIA H200", "NVIDIA H100 80GB HBM3"]
    assert common.run_gpu(dataclasses.replace(eps0, folder=tmp_path / "nowhere")) is None
    earlier = dataclasses.replace(
        eps0, folder=earlier_dir, train=[{**r, "accuracy": 0.25} for r in eps0.train],
        valid=[{**v, "nll": v["nll"] + 0.05 * (i + 1), "bleu": v["bleu"] - 0.5} for i, v in enumerate(eps0.valid)],
        evals={**eps0.evals, "best": {**eps0.evals["best"], "bleu": 5.0}})
    rerun = dataclasses.replace(eps0, train=[{**r, "accuracy": 0.26} for r in eps0.train])
    note = report.rerun_note(rerun, earlier)
    assert note.startswith(f"ε = 0.0: 0 of the {len(eps0.train) + len(eps0.valid)} training and validation records")
    assert "the NVIDIA H200 against v5's NVIDIA H100 80GB HBM3" in note
    assert "parts the numbers from step 250 on (accuracy 0.260000 vs 0.250000" in note
    later = dataclasses.replace(rerun, train=[{**r, "accuracy": 0.25 if r["step"] < 750 else 0.26} for r in eps0.train])
    assert "parts the numbers from step 750 on" in report.rerun_note(later, earlier)
    same = dataclasses.replace(eps0, train=[{**r, "accuracy": 0.25} for r in eps0.train], valid=earlier.valid)
    assert report.rerun_note(same, earlier).endswith("but other kernels, and still the same numbers")
    assert report.rerun_note(eps01, dataclasses.replace(eps01, folder=earlier_dir)).endswith(
        "both on the NVIDIA H100 80GB HBM3")
    noise = report.gpu_noise_note(rerun, earlier, gap=1.0)
    assert ("differed by up to 0.150 nats of dev NLL and 0.50 greedy dev BLEU (first 500 dev sentences) at the 3 "
            "validations both made (steps 500–1553)") in noise
    assert "scored test BLEU 5.27 vs 5.00: the hardware's rounding alone" in noise
    assert "The +1.00 between the averages is larger than both; one seed cannot settle it." in noise
    assert "is larger than the test-BLEU difference but not than the dev one" in report.gpu_noise_note(
        rerun, earlier, gap=0.4)
    assert "The +0.20 between the averages is within them" in report.gpu_noise_note(rerun, earlier, gap=0.2)
    v5 = [dataclasses.replace(r, folder=earlier_dir) for r in runs]
    assert report.cross_gpu_rerun(runs, v5) == (eps0, v5[0])
    assert report.cross_gpu_rerun(runs[1:], v5) is None           # v6 with one arm: nothing to compare yet
    assert report.other_gpu_runs({"v5": v5, "v6": runs}) == ["v6's ε = 0.0 arm, on one NVIDIA H200 (the same torch)"]
    head = report.eps_headline("v6", runs)
    assert "each alone on a GPU: ε = 0.1 on an NVIDIA H100 80GB HBM3, ε = 0 on an NVIDIA H200" in head
    assert f"{eps0.train_seconds:.0f} s for ε = 0 on the slower GPU" in head  # 1553 steps in its time vs 1554
    assert f"| 1553 | {eps0.train_seconds:.0f} | NVIDIA H200 | best (step 1553) |" in report.newstest_table(runs)
    assert " GPU " not in report.newstest_table(runs[1:])  # one GPU: no column
    unknown = earlier_dir / "unknown"
    unknown.mkdir()
    assert report.gpu_of(dataclasses.replace(eps01, folder=unknown)) == report.GPU  # no file: the default GPU
    assert report.rerun_note(eps01, dataclasses.replace(eps01, folder=unknown)).endswith("both on the " + report.GPU)
    reading = report.eps_reading("v6", {"v6": runs}, [synthetic_run(e, s, nll=1.5, bleu=30.0 + s / 100)
                                                      for e in (0.0, 0.1) for s in (1, 2)], (rerun, earlier))
    assert "The same arm (ε = 0.0, same code, seed and batches) on two GPU kinds (NVIDIA H200 here" in reading


@pytest.mark.parametrize("text, expected", [
    ("name, driver_version\nNVIDIA H200, 580\n", "NVIDIA H200"),
    ("NVIDIA H100 80GB HBM3\n", "NVIDIA H100 80GB HBM3"),
    ("\ufeff Name, memory.total [MiB]\n  NVIDIA H200, 143771 MiB\n", "NVIDIA H200"),
    ("name, driver_version\n", "from gpu.txt"),          # header only: says nothing, the folder's file does
    ("", "from gpu.txt"),
])
def test_run_gpu_reads_nvidia_smi_csv_and_falls_back(tmp_path, text, expected):
    (tmp_path / "gpu.txt").write_text("from gpu.txt\n")
    (tmp_path / "gpu_ls0.0.txt").write_text(text)
    run = common.Run(tmp_path, "ls0.0", 0.0, 1, [], [])
    assert common.run_gpu(run) == expected
    (tmp_path / "gpu.txt").unlink()
    assert common.run_gpu(run) == (None if expected == "from gpu.txt" else expected)
