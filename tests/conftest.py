"""Shared fixtures: small corpora and configs written into a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

PAIRS = [
    ("The house is small.", "Das Haus ist klein."),
    ("The dog sees the cat.", "Der Hund sieht die Katze."),
    ("I like green apples.", "Ich mag grüne Äpfel."),
    ("We are going home today.", "Wir gehen heute nach Hause."),
    ("Where is the station?", "Wo ist der Bahnhof?"),
    ("She reads a book.", "Sie liest ein Buch."),
] * 5


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_corpus(directory: Path, name: str, pairs=PAIRS) -> str:
    """Write `name.en` / `name.de` and return the prefix."""
    write_lines(directory / f"{name}.en", [en for en, _ in pairs])
    write_lines(directory / f"{name}.de", [de for _, de in pairs])
    return str(directory / name)


def tiny_config(tmp_path: Path, **sections) -> dict:
    """A tiny trainable config as a dict; `sections` are merged in (one level deep)."""
    cfg = {
        "data": {"train": {"source": "synthetic", "size": 600, "seed": 1},
                 "valid": {"source": "synthetic", "size": 40, "seed": 2},
                 "test": {"source": "synthetic", "size": 40, "seed": 3},
                 "vocab_size": 300, "max_tokens_per_sentence": 48, "data_dir": str(tmp_path / "data")},
        "model": {"d_model": 32, "n_heads": 2, "d_ff": 64, "n_encoder_layers": 1, "n_decoder_layers": 1,
                  "dropout": 0.1, "max_positions": 128},
        "optim": {"lr": 3e-3, "warmup_steps": 10},
        "train": {"device": "cpu", "precision": "fp32", "max_tokens": 512, "max_steps": 20, "log_every": 5,
                  "eval_every": 10, "out_dir": str(tmp_path / "run")},
        "eval": {"beam": 2, "dev_bleu_sentences": 10, "batch_tokens": 2000},
    }
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """configs/demo.yaml cut to 600 steps (about a minute on 2 cores); returns the run directory.
    Trained once per session: the end-to-end and export tests evaluate it, the distillation tests teach with it."""
    from translate.cli import main

    tmp = tmp_path_factory.mktemp("demo")
    overrides = ["train.max_steps=600", "train.eval_every=300", "train.save_every=300", "eval.dev_bleu_sentences=50",
                 "data.test.size=200", f"train.out_dir={tmp / 'run'}", f"data.data_dir={tmp / 'data'}"]
    argv = ["train", "--config", str(REPO / "configs" / "demo.yaml")]
    for override in overrides:
        argv += ["--set", override]
    assert main(argv) == 0
    return tmp / "run"


@pytest.fixture(scope="session")
def small_spm(tmp_path_factory) -> Path:
    """A 60-piece BPE tokenizer trained on both sides of PAIRS (a second): real pieces for tests."""
    from translate.tokenizer import train_tokenizer

    model_file = tmp_path_factory.mktemp("spm") / "spm.model"
    train_tokenizer([s for pair in PAIRS for s in pair], model_file=model_file, vocab_size=60, model_type="bpe",
                    character_coverage=1.0)
    return model_file


@pytest.fixture
def fsynced(monkeypatch) -> list[str]:
    """The paths fsynced from now on (files and directories) and "rename -> DST" for each rename, in
    order; the fsyncs and renames still happen."""
    events: list[str] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def recording_fsync(fd):
        events.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def recording(real):
        def rename(src, dst, *args, **kwargs):
            events.append(f"rename -> {dst}")
            return real(src, dst, *args, **kwargs)
        return rename

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording(real_replace))
    monkeypatch.setattr(os, "rename", recording(real_rename))
    return events


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("OMP_NUM_THREADS", "2")
