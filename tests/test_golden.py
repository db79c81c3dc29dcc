"""Golden loss trace: the first 50 steps of configs/demo.yaml at seed 1 must not drift.

Any change to the data pipeline, tokenizer, model, initialisation, loss, schedule or optimizer shows
up here. When a change is intended, re-record with a stated reason in the commit message:

    TRANSLATE_RECORD_GOLDEN=1 python -m pytest tests/test_golden.py
"""

import json
import os

import pytest

from translate.config import load_config
from translate.train import train

from conftest import REPO

GOLDEN = REPO / "tests" / "golden" / "demo_loss_trace.json"
STEPS = 50


def demo_trace(tmp_path) -> dict:
    overrides = [f"train.max_steps={STEPS}", "train.log_every=1", "train.eval_every=100000",
                 "eval.dev_bleu_sentences=0", f"train.out_dir={tmp_path / 'run'}", f"data.data_dir={tmp_path / 'data'}"]
    train(load_config(REPO / "configs" / "demo.yaml", overrides))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    return {"steps": [r["step"] for r in steps], "loss": [r["loss"] for r in steps], "nll": [r["nll"] for r in steps]}


def test_demo_loss_trace_matches_golden(tmp_path):
    trace = demo_trace(tmp_path)
    if os.environ.get("TRANSLATE_RECORD_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(trace, indent=1) + "\n")
        pytest.skip(f"recorded {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())
    assert trace["steps"] == golden["steps"] == list(range(1, STEPS + 1))
    # Tight enough to catch any change of the computation, loose enough for float summation order.
    assert trace["loss"] == pytest.approx(golden["loss"], rel=2e-4)
    assert trace["nll"] == pytest.approx(golden["nll"], rel=2e-4)
    assert trace["loss"][-1] < trace["loss"][0] - 1.0  # and it learns
