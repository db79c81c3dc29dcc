"""scripts/peer_marian.py (the HF Marian peer baseline) trains, validates, decodes and scores end to end
on the CPU at tiny size; its schedule, labels and length limit match translate's."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_config, write_config
from translate.config import Config, ModelConfig, OptimConfig
from translate.schedule import lr_at
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID

pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import peer_marian  # noqa: E402


def test_hf_schedule_matches_translate_up_to_the_warmup_start():
    optim = OptimConfig(lr=7e-4, warmup_steps=100)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.lr)
    schedule = peer_marian.build_schedule(optimizer, optim)
    for step in range(400):
        hf = optimizer.param_groups[0]["lr"]
        # HF's warmup starts at 0, translate's at warmup_init_lr (1e-7): that is the whole difference.
        assert hf == pytest.approx(lr_at(step, optim, d_model=512), abs=optim.warmup_init_lr), step
        if step >= optim.warmup_steps:
            assert hf == pytest.approx(lr_at(step, optim, d_model=512), rel=1e-12)
        optimizer.step()
        schedule.step()


def test_labels_and_generate_limit():
    tgt_out = torch.tensor([[5, 6, EOS_ID], [7, EOS_ID, PAD_ID]])
    assert peer_marian.hf_labels(tgt_out).tolist() == [[5, 6, EOS_ID], [7, EOS_ID, -100]]
    src = torch.tensor([[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]])  # longest: 4 tokens with EOS
    # translate's int(1.0 · 4 + 50) = 54 tokens, + 1 for EOS; capped by the position table.
    assert peer_marian.max_new_tokens(src, max_len_a=1.0, max_len_b=50, max_positions=1024) == 55
    assert peer_marian.max_new_tokens(src, max_len_a=1.0, max_len_b=50, max_positions=20) == 20


def test_nll_sum_is_cross_entropy_over_real_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    labels = torch.tensor([[1, 4, 3], [6, -100, -100]])
    expected = torch.nn.functional.cross_entropy(logits.view(-1, 7), labels.view(-1), reduction="sum")
    assert peer_marian.nll_sum(logits, labels) == pytest.approx(float(expected), rel=1e-6)
    logits[1, 2] = float("nan")  # a padding position cannot leak into the sum
    assert peer_marian.nll_sum(logits, labels) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("beam", [1, 4])
def test_generate_bans_pad_and_bos_and_forces_eos_at_the_limit(beam):
    torch.manual_seed(0)
    cfg = Config(model=ModelConfig(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1,
                                   max_positions=64))
    model = peer_marian.build_model(cfg, vocab_size=20).eval()
    with torch.no_grad():  # pad and BOS would win, EOS would never: only the settings can prevent both
        model.final_logits_bias[0, [PAD_ID, BOS_ID]] = 50.0
        model.final_logits_bias[0, EOS_ID] = -50.0
    src = torch.tensor([[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]])
    n_new = peer_marian.max_new_tokens(src, max_len_a=1.0, max_len_b=3, max_positions=64)  # 4 + 3 + 1 = 8
    gen = peer_marian.generation_config(beam=beam, lenpen=0.6, max_new_tokens=n_new)
    out = model.generate(input_ids=src, attention_mask=src != PAD_ID, generation_config=gen)
    assert out[:, 0].tolist() == [BOS_ID, BOS_ID]  # the decoder start
    new = out[:, 1:].tolist()
    assert [len(row) for row in new] == [8, 8]
    for row in new:
        assert row[-1] == EOS_ID and EOS_ID not in row[:-1] and not {PAD_ID, BOS_ID} & set(row)


def test_peer_marian_tiny_cpu_end_to_end(tmp_path):
    cfg = tiny_config(tmp_path, model={"d_model": 32, "n_heads": 2, "d_ff": 64, "n_encoder_layers": 1,
                                       "n_decoder_layers": 1, "dropout": 0.1, "max_positions": 128},
                      optim={"lr": 3e-3, "warmup_steps": 10},
                      train={"device": "cpu", "max_tokens": 512, "max_steps": 60, "log_every": 10, "eval_every": 30})
    config = write_config(tmp_path / "tiny.yaml", cfg)
    out, hyp = tmp_path / "peer.json", tmp_path / "peer.hyp"
    code = peer_marian.main(["--config", str(config), "--set", "eval.max_len_b=10", "--max-time", "60",
                             "--output", str(out), "--hyp", str(hyp)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["steps"] == 60 and result["stopped"] == "reached train.max_steps (60)"
    assert 0 < result["train_seconds"] <= result["loop_seconds"]
    assert result["tgt_tokens_per_s_median"] > 0

    records = [json.loads(line) for line in (tmp_path / "peer.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    valid = [r for r in records if r["kind"] == "valid"]
    assert [r["step"] for r in train] == [10, 20, 30, 40, 50, 60]
    assert [r["step"] for r in valid] == [30, 60]
    assert train[-1]["loss"] < train[0]["loss"] and train[-1]["nll"] < train[0]["nll"]
    assert all(r["nll"] < r["loss"] for r in train)  # label smoothing adds to the NLL
    vocab = result["data"]["vocab_size"]
    assert all(math.isfinite(r["nll"]) and r["nll"] < math.log(vocab) for r in valid)
    assert result["best"]["dev_nll"] == min(r["nll"] for r in valid)

    test = result["test"]
    assert isinstance(test["bleu"], float) and isinstance(test["chrf"], float)
    assert test["sentences"] == 40 and test["beam"] == cfg["eval"]["beam"] and test["lenpen"] == 0.6
    assert len(hyp.read_text(encoding="utf-8").splitlines()) == 40
    assert result["environment"]["transformers"] is not None
