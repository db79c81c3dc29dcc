"""The training loop end to end on the CPU: learning, exact resume, NaN guard, signals, checkpoints."""

import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile

import pytest
import torch

import translate.checkpoint as checkpoint_module
import translate.guards as guards
import translate.train as train_module
from translate.checkpoint import load_checkpoint
from translate.cli import main
from translate.config import config_from_dict
from translate.errors import UserError
from translate.metrics import format_perplexity
from translate.tokenizer import Tokenizer
from translate.train import train

from conftest import PAIRS, REPO, tiny_config, write_config, write_corpus, write_lines
from faults import loss_fault


def metrics(run_dir, kind="train"):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def test_tiny_run_learns_and_leaves_checkpoints(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path, train={"max_steps": 60, "eval_every": 30, "save_every": 20,
                                                        "keep_last": 2}))
    assert train(cfg) == 0
    run = tmp_path / "run"
    records = metrics(run)
    assert records[-1]["nll"] < records[0]["nll"] - 1.0
    valid = metrics(run, "valid")
    assert [r["step"] for r in valid] == [30, 60] and valid[-1]["nll"] < valid[0]["nll"]
    assert "bleu" in valid[-1]
    names = sorted(p.name for p in run.iterdir())
    assert {"checkpoint_best.pt", "checkpoint_last.pt", "config.yaml", "metrics.jsonl", "spm.model"} <= set(names)
    assert [n for n in names if n.startswith("checkpoint_step")] == ["checkpoint_step40.pt", "checkpoint_step60.pt"]
    state = load_checkpoint(run / "checkpoint_last.pt")
    assert state["step"] == 60 and state["config"]["model"]["d_model"] == 32


def test_compiled_run_learns_and_saves_plain_checkpoints(tmp_path, monkeypatch):
    """train.compile: the layers and the loss's passes compiled (aot_eager here, Inductor's compile
    time is minutes on 2 cores), dropout on, validation between steps; the checkpoint holds the plain
    model's keys and `translate eval` reads it."""
    import functools

    import torch._dynamo
    import torch.fx.experimental._config as fx_config
    from torch._dynamo.utils import counters

    import translate.loss as loss_module
    from translate.runtime import compile_layers

    duck_shape = fx_config.use_duck_shape
    monkeypatch.setattr(train_module, "compile_layers", functools.partial(compile_layers, backend="aot_eager"))
    monkeypatch.setattr(loss_module, "_compiled_chunk_pass",
                        lambda: torch.compile(loss_module._chunk_pass, dynamic=True, backend="aot_eager"))
    torch._dynamo.reset()
    counters.clear()
    try:
        cfg = config_from_dict(tiny_config(tmp_path, train={"compile": True, "max_steps": 40, "eval_every": 20}))
        assert train(cfg) == 0
        assert counters["stats"]["unique_graphs"] >= 4  # encoder and decoder layer, loss; train and validation
    finally:
        torch._dynamo.reset()
        fx_config.use_duck_shape = duck_shape
    run = tmp_path / "run"
    records = metrics(run)
    assert records[-1]["nll"] < records[0]["nll"] - 0.5
    state = load_checkpoint(run / "checkpoint_last.pt")
    assert state["step"] == 40 and not any("_orig_mod" in k for k in state["model"])
    assert main(["eval", "--checkpoint", str(run / "checkpoint_last.pt"), "--device", "cpu"]) == 0


def test_resume_gives_the_same_weights_as_never_stopping(tmp_path):
    straight = config_from_dict(tiny_config(tmp_path / "a", train={"max_steps": 30, "eval_every": 100,
                                                                   "out_dir": str(tmp_path / "straight")}))
    train(straight)
    halves = tiny_config(tmp_path / "a", train={"max_steps": 15, "eval_every": 100, "out_dir": str(tmp_path / "halves")})
    train(config_from_dict(halves))
    halves["train"]["max_steps"] = 30
    train(config_from_dict(halves), resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "halves" / "checkpoint_last.pt")
    assert a["step"] == b["step"] == 30
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    # The optimizer's moments too.
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])


def test_resume_with_a_different_model_shape_names_the_field(tmp_path):
    raw = tiny_config(tmp_path, train={"max_steps": 4, "eval_every": 100})
    train(config_from_dict(raw))
    raw["model"]["d_ff"] = 128
    raw["train"]["max_steps"] = 8
    with pytest.raises(UserError, match="model.d_ff is 128 in the config but 64 in the checkpoint"):
        train(config_from_dict(raw), resume=True)


def test_nan_steps_are_skipped_counted_and_do_not_advance_the_schedule(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path, train={"max_steps": 20, "log_every": 1, "eval_every": 100}))
    with loss_fault({3: math.nan, 4: math.nan, 10: math.nan}):
        assert train(cfg) == 0
    records = metrics(tmp_path / "run")
    skipped = metrics(tmp_path / "run", "skipped")
    assert [s["step"] for s in skipped] == [3, 3, 8]  # the step count does not move on a skipped step
    assert {s["what"] for s in skipped} == {"loss"}
    assert [r["step"] for r in records] == list(range(1, 21))
    assert records[-1]["skipped_steps"] == 3
    state = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # lr of the step after the skips equals what the schedule gives for that step number
    from translate.schedule import lr_at
    assert records[3]["lr"] == pytest.approx(lr_at(3, cfg.optim, d_model=cfg.model.d_model))


def test_repeated_nan_stops_with_a_diagnostic_and_keeps_the_last_good_state(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path, train={"max_steps": 50, "max_bad_steps": 4, "eval_every": 100}))
    with loss_fault(dict.fromkeys(range(5, 1000), math.inf)):
        with pytest.raises(guards.TrainingStopped, match="4 consecutive steps with non-finite loss at step 5"):
            train(cfg)
    state = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_failed_save_on_stopping_is_the_error_not_a_claim_that_the_state_is_saved(tmp_path, monkeypatch):
    # Checkpoints are written in the background; the save before a stop must still wait for its
    # write, so that a full disk is reported instead of "The last good state is in checkpoint_last.pt".
    cfg = config_from_dict(tiny_config(tmp_path, train={"max_steps": 50, "max_bad_steps": 4, "eval_every": 100}))

    def disk_full(state, path):
        raise UserError(f"cannot write checkpoint {path}: No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", disk_full)
    with loss_fault(dict.fromkeys(range(5, 1000), math.inf)):
        with pytest.raises(UserError, match="cannot write checkpoint .*checkpoint_last.pt"):
            train(cfg)


def test_divergence_signs_rise_and_no_better_than_token_frequencies(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path, train={"divergence_nats": 2.0, "divergence_grace_steps": 100}))
    sign = lambda nll, best=3.0, step=50: guards.divergence_sign(  # noqa: E731
        nll, best=best, step=step, cfg=cfg, unigram_entropy=4.8)
    assert sign(5.01) == "rise" and sign(5.0) == ""  # more than divergence_nats above the best
    # At or above the unigram entropy counts only after warmup (10) + grace (100) steps.
    assert sign(4.8, best=4.7, step=110) == "" and sign(4.8, best=4.7, step=111) == "unigram"
    assert sign(4.79, best=4.7, step=500) == ""


def test_divergence_stops_after_patience_intervals_in_a_row(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path, train={"divergence_patience": 3, "divergence_grace_steps": 0}))
    state = train_module.TrainState(step=50)
    check = lambda nll: guards.check_divergence(state, nll, cfg, unigram_entropy=4.8, lr=0.3)  # noqa: E731
    for nll in (4.7, 4.9, 4.9, 4.0, 4.9, 4.9):  # the interval at 4.0 resets the count
        check(nll)
    assert state.rising_intervals == 2 and state.best_train_nll == 4.0
    with pytest.raises(guards.TrainingStopped, match=r"no better than the unigram entropy .*4\.8 nats.*"
                                                           r"optim\.lr \(0\.003\) too high.*--overwrite"):
        check(4.9)
    off = config_from_dict(tiny_config(tmp_path, train={"divergence_nats": 0.0, "divergence_grace_steps": 0}))
    quiet = train_module.TrainState(step=50)
    for _ in range(5):
        guards.check_divergence(quiet, 9.0, off, unigram_entropy=4.8, lr=0.3)
    assert quiet.rising_intervals == 0


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    raw = tiny_config(tmp_path, train={"max_steps": 100000, "eval_every": 100000, "log_every": 1})
    config = write_config(tmp_path / "c.yaml", raw)
    proc = subprocess.Popen([sys.executable, "-m", "translate", "train", "--config", str(config)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics_file = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics_file.exists() and len(metrics_file.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "received SIGTERM" in out
    state = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert state["step"] >= 3
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    train(config_from_dict(tiny_config(tmp_path, train={"max_steps": 2, "eval_every": 100})))
    path = tmp_path / "run" / "checkpoint_last.pt"
    data = bytearray(path.read_bytes())
    flipped = tmp_path / "run" / "flipped.pt"
    with zipfile.ZipFile(path) as archive:  # a byte in the middle of the largest tensor's data
        largest = max(archive.infolist(), key=lambda info: info.file_size)
    name_length, extra_length = struct.unpack_from("<HH", data, largest.header_offset + 26)  # its local header
    data_start = largest.header_offset + 30 + name_length + extra_length
    data[data_start + largest.file_size // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    assert main(["eval", "--checkpoint", str(flipped)]) == 2
    assert "corrupt" in capsys.readouterr().err
    truncated = tmp_path / "run" / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    assert main(["eval", "--checkpoint", str(truncated)]) == 2
    err = capsys.readouterr().err
    assert "truncated.pt" in err and "truncated or corrupt" in err
    (tmp_path / "run" / "spm.model").unlink()
    assert main(["eval", "--checkpoint", str(path)]) == 2
    assert "spm.model" in capsys.readouterr().err and "missing" in capsys.readouterr().err + "missing"


def test_long_dev_pairs_are_left_out_of_the_dev_loss_and_truncated_for_bleu(tmp_path, capsys):
    """Dev pairs never go through training's length filter: one longer than model.max_positions and
    one longer than train.max_tokens must not crash validation, dev BLEU or `translate eval`."""
    past_positions = ("the dog sees the cat " * 30, "der Hund sieht die Katze")  # > 127 tokens, < 512
    past_budget = ("the dog sees the cat " * 120, "der Hund sieht die Katze " * 120)  # > 512 tokens
    prefix = write_corpus(tmp_path / "corpus", "valid", [past_positions] + PAIRS[:6] + [past_budget])
    raw = tiny_config(tmp_path, train={"max_steps": 2, "eval_every": 2}, eval={"dev_bleu_sentences": 4})
    raw["data"]["valid"] = {"source": "files", "prefix": prefix}
    assert train(config_from_dict(raw)) == 0
    out = capsys.readouterr().out
    assert "warning: 2 of 8 dev pairs have a side longer than 127 tokens" in out
    assert "warning: 1 of the 4 dev BLEU sources are longer than 127 tokens" in out
    tokenizer = Tokenizer(tmp_path / "run" / "spm.model")
    expected_tokens = sum(len(ids) + 1 for ids in tokenizer.encode([de for _, de in PAIRS[:6]]))  # + EOS
    valid = metrics(tmp_path / "run", "valid")[-1]
    assert valid["tokens"] == expected_tokens and "bleu" in valid
    # translate eval truncates a long source with a warning naming the line.
    src = write_lines(tmp_path / "src.txt", [PAIRS[0][0], past_budget[0]])
    ref = write_lines(tmp_path / "ref.txt", [PAIRS[0][1], past_budget[1]])
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "checkpoint_last.pt"), "--src", str(src),
                 "--ref", str(ref), "--beam", "1"]) == 0
    assert "warning: line 2:" in capsys.readouterr().err


def test_two_process_gloo_ddp(tmp_path):
    raw = tiny_config(tmp_path, train={"max_steps": 6, "eval_every": 3, "log_every": 3})
    config = write_config(tmp_path / "c.yaml", raw)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
               "-m", "translate", "train", "--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2" in result.stdout
    assert result.stdout.count("stopping at step 6") == 1  # only rank 0 logs
    assert load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")["step"] == 6
    raw["train"]["max_steps"] = 9
    write_config(config, raw)
    result = subprocess.run(command + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")["step"] == 9


def test_perplexity_is_never_capped():
    assert format_perplexity(0.0) == 1.0
    assert format_perplexity(2.0) == pytest.approx(7.38906, rel=1e-5)
    assert format_perplexity(1000.0) == "1.970e+434"
    assert format_perplexity(float("nan")) == "nan"
