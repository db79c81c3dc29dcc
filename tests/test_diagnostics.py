"""Diagnostics: the logged statistics, train.log and resume records, collapse detection, the output
layer's extra decay, `translate plot` and TensorBoard (docs/DIAGNOSTICS.md)."""

import json
from contextlib import nullcontext
import math
import sys

import numpy as np
import pytest
import torch
import yaml

import translate.train as train_module
from translate.calibration import CalibrationStats, bin_sums, from_bin_sums
from translate.checkpoint import load_checkpoint, save_checkpoint
from translate.cli import main
from translate.collapse import CONFIDENT, collapse_signs, hypothesis_statistics
from translate.config import config_from_dict
from translate.errors import UserError
from translate.metrics import STATISTICS, Interval
from translate.model import Transformer
from translate.train import TrainState, train

from conftest import tiny_config, write_config


def records(run_dir, kind):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 20-step tiny run with the default diagnostics (validations at 10 and 20)."""
    tmp = tmp_path_factory.mktemp("tiny")
    assert train(config_from_dict(tiny_config(tmp))) == 0
    return tmp / "run"


def test_train_and_valid_records_carry_the_statistics(tiny_run):
    train_records, valid = records(tiny_run, "train"), records(tiny_run, "valid")
    vocab = 300
    for r in train_records:
        assert 0 < r["entropy"] <= math.log(vocab) + 1e-6
        assert 1 / vocab <= r["confidence"] <= 1 and 0 < r["p_target"] <= r["confidence"]
        assert r["peak_logit"] >= r["max_logit"]
        assert r["output_weight_norm"] > 0 and 0 < r["update_ratio"] < 1
        assert "confidence_penalty" not in r  # off by default
    for r in valid:
        assert 0 < r["entropy"] <= math.log(vocab) + 1e-6 and 0 < r["confidence"] <= 1 and 0 <= r["ece"] <= 1
        assert {"identical_share", "looping_share", "distinct_bigrams", "length_ratio", "elapsed_s"} <= set(r)


def test_validation_statistics_equal_a_direct_computation(tiny_run):
    """Dev entropy, confidence and ECE of the saved model against softmax on materialised logits."""
    from translate.calibration import calibration
    from translate.data import prepare

    state = load_checkpoint(tiny_run / "checkpoint_last.pt")
    cfg = config_from_dict(state["config"])
    model = Transformer(cfg.model, vocab_size=state["vocab_size"], pad_id=0)
    model.load_state_dict(state["model"])
    data = prepare(cfg, verbose=False)
    got = train_module.validate(model, data.valid, cfg, train_module.Distributed(), nullcontext())
    want = calibration(model, data.valid, device=torch.device("cpu"), max_tokens=cfg.train.max_tokens)
    assert got["tokens"] == want["tokens"]
    assert got["entropy"] == pytest.approx(want["mean_entropy"], rel=1e-5)
    assert got["confidence"] == pytest.approx(want["mean_confidence"], rel=1e-5)
    assert got["ece"] == pytest.approx(want["ece"], rel=1e-4, abs=1e-6)
    assert got["nll"] == pytest.approx(want["nll"], rel=1e-5)


def test_interval_means_and_peak_over_steps():
    interval = Interval(extra=("ce",), statistics=True)
    keys = ("loss", "nll", "accuracy", "ce") + STATISTICS
    steps = [torch.arange(1.0, len(keys) + 1), torch.full((len(keys),), 3.0)]
    for sums, peak in zip(steps, (torch.tensor(7.0), torch.tensor(2.0))):
        interval.add(sums, 4, torch.tensor(0.5), peak)
    record = interval.report(TrainState(step=2), lr=1e-3, elapsed=1.0, world_size=1, confidence_penalty=0.5)
    for i, key in enumerate(keys):
        assert record[key] == pytest.approx((i + 1 + 3) / 8)
    assert record["peak_logit"] == 7.0
    assert record["confidence_penalty"] == pytest.approx(-0.5 * record["entropy"])


def test_weight_statistics_equal_a_direct_computation():
    cfg = config_from_dict(tiny_config(__import__("pathlib").Path("/tmp")))
    model = Transformer(cfg.model, vocab_size=50, pad_id=0)
    before = train_module._weight_vector(model)
    saved = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.01).add_(0.001)
    got = train_module._weight_statistics(model, before)
    delta = math.sqrt(sum(float(((p.detach() - s) ** 2).sum()) for p, s in zip(model.parameters(), saved)))
    norm = math.sqrt(sum(float((s ** 2).sum()) for s in saved))
    assert float(got["update_ratio"]) == pytest.approx(delta / norm, rel=1e-5)
    assert float(got["output_weight_norm"]) == pytest.approx(float(model.output_proj.weight.norm()), rel=1e-6)


def test_ece_bins_on_the_device_equal_calibration_stats():
    g = torch.Generator().manual_seed(0)
    confidence = torch.rand(500, generator=g)
    confidence[:3] = torch.tensor([1.0, 0.0, 14 / 15])  # the edges
    correct = torch.rand(500, generator=g) < confidence
    reference = CalibrationStats(n_bins=15)
    reference.add(confidence.double().numpy(), correct.numpy())
    got = from_bin_sums(bin_sums(confidence, correct) + bin_sums(confidence[:0], correct[:0])).summary()
    want = reference.summary()
    assert got["ece"] == pytest.approx(want["ece"], rel=1e-6) and want["ece"] > 0
    assert got["bins"]["count"] == want["bins"]["count"]


def test_statistics_can_be_turned_off(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path, train={"max_steps": 5, "eval_every": 100, "statistics": False}))
    assert train(cfg) == 0
    record = records(tmp_path / "run", "train")[-1]
    assert not {"entropy", "max_logit", "update_ratio", "output_weight_norm"} & set(record)


def test_confidence_penalty_is_logged_as_its_own_part(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path, train={"max_steps": 5, "log_every": 5, "eval_every": 100,
                                                        "confidence_penalty": 0.3, "statistics": False}))
    assert train(cfg) == 0
    record = records(tmp_path / "run", "train")[-1]
    assert record["confidence_penalty"] == pytest.approx(-0.3 * record["entropy"])
    # label smoothing 0.1: loss = smoothed CE − β·H, so loss − penalty is the smoothed CE, above the NLL's floor
    assert record["loss"] < record["loss"] - record["confidence_penalty"]


# ---------------------------------------------------------------------------------------------
# train.log and resume


def test_train_log_holds_the_console_and_resume_records_the_overrides(tmp_path, capsys):
    raw = tiny_config(tmp_path, train={"max_steps": 5, "eval_every": 100})
    assert train(config_from_dict(raw)) == 0
    run = tmp_path / "run"
    first = (run / "train.log").read_text()
    printed = capsys.readouterr().out
    for line in ("label_smoothing: 0.1", "tokenizer: training", "model: ", "step 5 |", "valid step 5 |", "done: 5 steps"):
        assert line in printed and line in first, line
    raw["train"]["max_steps"] = 10
    assert train(config_from_dict(raw), resume=True) == 0
    log = (run / "train.log").read_text()
    assert log.startswith(first) and "resumed from" in log and "done: 10 steps" in log
    assert "train.max_steps: 5 -> 10" in log
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"] == 10
    assert yaml.safe_load((run / "config_until_step5.yaml").read_text())["train"]["max_steps"] == 5
    # A resume without changes records nothing new and keeps config.yaml.
    raw["train"]["max_steps"] = 10
    assert train(config_from_dict(raw), resume=True) == 0
    assert sorted(p.name for p in run.glob("config*.yaml")) == ["config.yaml", "config_until_step5.yaml"]


def test_a_stopping_error_is_in_train_log(tmp_path):
    raw = tiny_config(tmp_path, train={"max_steps": 4, "eval_every": 100})
    train(config_from_dict(raw))
    raw["model"]["d_ff"] = 128
    with pytest.raises(UserError, match="model.d_ff"):
        train(config_from_dict(raw), resume=True)
    assert "error: cannot resume" in (tmp_path / "run" / "train.log").read_text()


# ---------------------------------------------------------------------------------------------
# Collapse


def test_hypothesis_statistics_by_hand():
    sources = ["a", "b", "c", "a", "d"]
    hypotheses = ["x y", "x y", "z", "z", "w"]  # "x y" from two sources; "z" from c and a: both count
    pieces = [[1, 2], [1, 2], [3, 3, 3, 3], [3, 3, 3], [4, 5, 4, 5]]
    stats = hypothesis_statistics(sources, hypotheses, pieces)
    assert stats["identical_share"] == pytest.approx(4 / 5)
    assert stats["looping_share"] == pytest.approx(1 / 5)  # only the run of four
    # bigrams: (1,2) ×2, (3,3) ×5, (4,5) ×2, (5,4) ×1 -> 4 distinct of 10
    assert stats["distinct_bigrams"] == pytest.approx(4 / 10)
    # The same source twice giving the same output is not a collapse.
    assert hypothesis_statistics(["a", "a"], ["x", "x"], [[1], [1]])["identical_share"] == 0


def test_collapse_rule():
    healthy = {"entropy": 0.9, "nll": 1.2, "confidence": 0.7, "identical_share": 0.02, "looping_share": 0.0}
    assert collapse_signs(healthy) == []
    assert "sure and wrong" in collapse_signs({**healthy, "entropy": 0.01})[0]
    assert collapse_signs({**healthy, "entropy": 0.01, "nll": 0.02}) == []  # learned, not collapsed
    assert "identical" in collapse_signs({**healthy, "identical_share": 0.8})[0]
    assert "repeat one piece" in collapse_signs({**healthy, "looping_share": 0.9})[0]
    # An untrained model, unsure of everything, repeats itself too: not a collapse.
    assert collapse_signs({**healthy, "confidence": CONFIDENT / 2, "identical_share": 1.0, "looping_share": 1.0}) == []


def collapse_checkpoint(path, token: int = 7) -> None:
    """Make the saved model put nearly all probability on `token` for every input: the decoder's
    final LayerNorm outputs one constant vector u, and the output row of `token` points along it."""
    state = load_checkpoint(path)
    model = state["model"]
    u = torch.randn(model["decoder_norm.bias"].shape, generator=torch.Generator().manual_seed(0))
    model["decoder_norm.weight"].zero_()
    model["decoder_norm.bias"].copy_(u)
    model["output_proj.weight"][token] += 40 * u / u.norm() ** 2
    save_checkpoint({k: v for k, v in state.items() if k != "digest"}, path)


@pytest.mark.parametrize("stop", [False, True])
def test_a_collapsed_model_trips_the_rule(tmp_path, stop):
    raw = tiny_config(tmp_path, model={"norm_first": True}, train={"max_steps": 4, "eval_every": 100})
    assert train(config_from_dict(raw)) == 0
    run = tmp_path / "run"
    collapse_checkpoint(run / "checkpoint_last.pt")
    raw["train"].update(max_steps=5, stop_on_collapse=stop)
    raw["optim"].update(lr=1e-9, warmup_init_lr=1e-9)  # one step that leaves the collapse in place
    if stop:
        with pytest.raises(UserError, match="looks collapsed at step 5.*sure and wrong.*Remedies: label smoothing"):
            train(config_from_dict(raw), resume=True)
    else:
        assert train(config_from_dict(raw), resume=True) == 0
    valid = records(run, "valid")[-1]
    assert valid["step"] == 5 and valid["entropy"] < 0.01 and valid["confidence"] > 0.99
    # One piece repeated up to each sentence's length limit: every hypothesis loops (they are identical
    # only where the sources have the same length, so identical_share depends on the dev slice).
    assert valid["looping_share"] == 1.0 and valid["distinct_bigrams"] < 0.05
    assert "sure and wrong" in valid["collapse"][0] and "repeat one piece" in valid["collapse"][-1]
    log = (run / "train.log").read_text()
    assert ("error: the model looks collapsed" in log) if stop else ("warning: the model looks collapsed" in log)
    assert load_checkpoint(run / "checkpoint_last.pt")["step"] == (4 if stop else 5)


# ---------------------------------------------------------------------------------------------
# optim.output_weight_decay


@pytest.mark.parametrize("tied", [True, False])
def test_output_weight_decay_is_its_own_group(tmp_path, tied):
    raw = tiny_config(tmp_path, model={"share_embeddings": tied}, optim={"weight_decay": 0.01,
                                                                         "output_weight_decay": 0.5})
    cfg = config_from_dict(raw)
    model = Transformer(cfg.model, vocab_size=50, pad_id=0)
    groups = train_module._build_optimizer(model, cfg, torch.device("cpu")).param_groups
    assert len(groups) == 3 and groups[2]["params"] == [model.output_proj.weight]
    assert groups[2]["weight_decay"] == pytest.approx(0.5 if tied else 0.51)  # tied: the embedding had none
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    plain = config_from_dict(tiny_config(tmp_path))
    assert len(train_module._build_optimizer(model, plain, torch.device("cpu")).param_groups) == 2


def test_new_settings_are_validated(tmp_path):
    with pytest.raises(UserError) as e:
        config_from_dict(tiny_config(tmp_path, optim={"output_weight_decay": -1}, train={"confidence_penalty": -0.1}))
    assert "optim.output_weight_decay (-1.0) must not be negative" in str(e.value)
    assert "train.confidence_penalty (-0.1) must not be negative" in str(e.value)


# ---------------------------------------------------------------------------------------------
# translate plot and TensorBoard


def test_plot_writes_a_png_and_names_every_run(tiny_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from translate.plot import find_runs, plot_runs

    output = tmp_path / "curves.png"
    assert main(["plot", str(tiny_run), "--output", str(output), "--x", "time"]) == 0
    data = output.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 30_000 < len(data) < 2_000_000
    # Two runs (a metrics file named directly, with its own suffix) overlaid, named in the legend.
    other = tmp_path / "arm" / "metrics_ls0.jsonl"
    other.parent.mkdir()
    other.write_text((tiny_run / "metrics.jsonl").read_text() + "{half a line")
    figure = plot_runs(find_runs([tiny_run, other]))
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert labels[:2] == ["run", "arm ls0"]
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert {"NLL (nats per target token)", "dev BLEU (greedy, dev slice)", "entropy of p (nats)",
            "target tokens / s", "learning rate", "gradient norm (before clipping)"} <= set(titles)


def test_plot_errors_are_one_message(tmp_path, capsys, monkeypatch):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "nll": 2.0}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    assert main(["plot", str(tmp_path)]) == 2
    assert 'pip install -e ".[plots]"' in capsys.readouterr().err


def test_tensorboard_scalars_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config_from_dict(tiny_config(tmp_path, train={"max_steps": 10, "tensorboard": True}))
    assert train(cfg) == 0
    run = tmp_path / "run"
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/nll", "train/entropy", "train/update_ratio", "valid/nll", "valid/ece", "valid/bleu"} <= tags
    logged = {r["step"]: r["nll"] for r in records(run, "train")}
    read = {e.step: e.value for e in events.Scalars("train/nll")}
    assert read.keys() == logged.keys() == {5, 10}
    assert np.allclose([read[s] for s in logged], list(logged.values()), rtol=1e-6)


def test_tensorboard_without_the_package_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    path = write_config(tmp_path / "t.yaml", tiny_config(tmp_path, train={"tensorboard": True}))
    assert main(["train", "--config", str(path)]) == 2
    assert 'pip install -e ".[tensorboard]"' in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
