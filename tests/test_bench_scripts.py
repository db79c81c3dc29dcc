"""The benchmark scripts run end to end on the CPU at tiny sizes; the FLOPs formula is exact."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import PAIRS, write_lines
from translate.beam import beam_search, greedy_search
from translate.config import ModelConfig
import translate.model
from translate.model import Transformer
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_attention  # noqa: E402
import bench_common  # noqa: E402
import bench_decode  # noqa: E402
import bench_train  # noqa: E402

HAVE_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


def test_train_step_flops_by_hand():
    # D=2, F=4, V=10, one encoder and one decoder layer; one sentence, s=3 source and t=2 target tokens.
    #   encoder matmuls   2·3·(4·4 + 2·2·4)  = 6·32 = 192
    #   cross K/V         2·3·(2·4)          = 48
    #   decoder matmuls   2·2·(6·4 + 2·2·4)  = 4·40 = 160
    #   output projection 2·2·2·10           = 80
    #   encoder attention 4·2·3²             = 72
    #   causal self-attn  4·2·(2·3/2)        = 24
    #   cross-attention   4·2·(2·3)          = 48
    #   forward = 624, step = 3 · 624 = 1872
    flops = bench_common.train_step_flops(d_model=2, d_ff=4, vocab_size=10, n_encoder_layers=1, n_decoder_layers=1,
                                          src_lengths=[3], tgt_lengths=[2])
    assert flops == 1872
    # Sentences add up independently.
    two = bench_common.train_step_flops(d_model=2, d_ff=4, vocab_size=10, n_encoder_layers=1, n_decoder_layers=1,
                                        src_lengths=[3, 3], tgt_lengths=[2, 2])
    assert two == 2 * 1872


def test_bench_train_tiny_cpu(tmp_path):
    systems = ["translate", "nn_transformer"] + (["hf_marian"] if HAVE_TRANSFORMERS else [])
    out = tmp_path / "train.json"
    bench_train.main(["--device", "cpu", "--tiny", "--synthetic-batches", "--steps", "2", "--warmup", "1",
                      "--systems", ",".join(systems), "--output", str(out), "--markdown", str(tmp_path / "t.md"),
                      "--profile", str(tmp_path / "profile.txt")])
    result = json.loads(out.read_text())
    assert result["environment"]["torch"] == torch.__version__
    rows = {r["system"]: r for r in result["rows"]}
    assert list(rows) == systems
    for row in rows.values():
        assert row["error"] is None, row
        for key in ("tgt_tokens_per_s", "src_tgt_tokens_per_s", "ms_per_step", "mfu", "flops_per_step"):
            assert row[key] > 0, (row["system"], key)
        assert row["steps"] == 2
        assert 4 < row["mean_nll"] < 10  # ≈ ln(1000) = 6.9 for every system at initialisation
    assert rows["translate"]["vs_translate"] == 1.0
    assert "| translate |" in (tmp_path / "t.md").read_text()
    profile = (tmp_path / "profile.txt").read_text()  # the first system's 2 timed steps, profiled afterwards
    assert profile.startswith("translate: 2 steps; sorted by cpu_time_total") and "aten::mm" in profile
    assert "_LinearSmoothedCrossEntropy" in profile  # translate's fused loss, not a peer's


def test_every_system_rehearses_the_timed_batches_before_the_timing(monkeypatch):
    """A compiled system must meet every timed shape untimed first: warm-up batches, then the timed
    ones once, then the timed ones under the clock."""
    seen = []

    def build(system, dims, device, autocast, seed):
        model = torch.nn.Linear(1, 1)
        return model, lambda batch: seen.append(batch) or torch.tensor(1.0)

    monkeypatch.setattr(bench_train, "build", build)
    warmup, timed = ["w"], ["a", "b"]
    row = bench_train.measure("translate", {}, warmup, timed, {"tgt": 10, "src": 10, "flops": 100},
                              device=torch.device("cpu"), autocast=None, peak_flops=1e9, seed=0)
    assert seen == ["w", "a", "b", "a", "b"]
    assert row["steps"] == 2 and row["mean_nll"] == 1.0


def test_bench_train_records_a_failing_system(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("compile exploded")

    monkeypatch.setitem(bench_train.BUILDERS, "nn_transformer", broken)
    out = tmp_path / "train.json"
    bench_train.main(["--device", "cpu", "--tiny", "--synthetic-batches", "--steps", "1", "--warmup", "0",
                      "--systems", "nn_transformer,translate", "--output", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert rows[0] == {"system": "nn_transformer", "error": "RuntimeError: compile exploded", "vs_translate": None}
    assert rows[1]["error"] is None and rows[1]["tgt_tokens_per_s"] > 0


@pytest.fixture(scope="module")
def spm_and_source(tmp_path_factory, small_spm):
    source = write_lines(tmp_path_factory.mktemp("bench") / "src.en", [en for en, _ in PAIRS[:6]])
    return small_spm, source


def test_forced_length_wrapper_disables_eos_until_the_limit():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1),
                        vocab_size=12, pad_id=PAD_ID).eval()
    # Bias the model towards EOS so that, unforced, it would stop at once.
    with torch.no_grad():
        model.output_proj.weight[EOS_ID] += 5.0
    src = torch.tensor([[5, 6, 7, EOS_ID], [8, 9, EOS_ID, PAD_ID]])  # source lengths 4 and 3
    wrapped = bench_decode.ForcedLength(model, max_len_a=1.0, max_len_b=2)
    common = dict(max_len_a=1.0, max_len_b=2, bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID, max_output_len=100)
    for static_shapes in (False, True):  # model.decode, or model.decode_step (--cuda-graphs)
        beams = beam_search(wrapped, src, src == PAD_ID, beam_size=3, lenpen=0.6, static_shapes=static_shapes, **common)
        assert [len(h[0].tokens) for h in beams] == [6, 5]  # src_len + 2 each, then EOS
        assert all(EOS_ID not in h[0].tokens for h in beams)
        greedy = greedy_search(wrapped, src, src == PAD_ID, static_shapes=static_shapes, **common)
        assert [len(h[0].tokens) for h in greedy] == [6, 5]


def test_bench_decode_tiny_cpu(tmp_path, spm_and_source):
    spm, src = spm_and_source
    out = tmp_path / "decode.json"
    bench_decode.main(["--device", "cpu", "--tiny", "--spm", str(spm), "--src", str(src), "--systems", "translate",
                       "--cuda-graphs", "--output", str(out), "--profile", str(tmp_path / "beam.txt")])
    # On the CPU: static shapes, no graph. The profiles: the forced beam rows, eager and static, run again.
    for name in ("beam.txt", "beam_graphs.txt"):
        profile = (tmp_path / name).read_text()
        assert profile.startswith(f"{name[:-4]}: 6 sentences, float32; sorted by cpu_time_total"), profile[:80]
        assert "aten::log_softmax" in profile and "aten::topk" in profile
    result = json.loads(out.read_text())
    rows = {r["system"]: r for r in result["rows"]}
    assert set(rows) == {"translate_beam4_forced", "translate_beam4_forced_graphs", "translate_beam4_natural",
                         "translate_greedy_forced", "translate_greedy_forced_graphs"}
    assert "UNTRAINED" in result["settings"]["model"]
    for row in rows.values():
        assert row["error"] is None, row
        assert row["sentences"] == 6
        assert row["sentences_per_s"] > 0 and row["tokens_per_s"] > 0 and row["seconds"] > 0


def test_bench_decode_tiny_cpu_hf_rows(tmp_path, spm_and_source):
    pytest.importorskip("transformers")
    spm, src = spm_and_source
    out = tmp_path / "decode.json"
    bench_decode.main(["--device", "cpu", "--tiny", "--spm", str(spm), "--src", str(src), "--output", str(out)])
    rows = {r["system"]: r for r in json.loads(out.read_text())["rows"]}
    for name in ("hf_beam4_forced", "hf_greedy_forced"):
        assert rows[name]["error"] is None, rows[name]
        assert rows[name]["sentences_per_s"] > 0 and rows[name]["vs_translate"] > 0
    # Forced length: HF generates at least as many tokens as translate (it pads a batch to its longest limit).
    assert rows["hf_beam4_forced"]["generated_tokens"] >= rows["translate_beam4_forced"]["generated_tokens"]


def test_bench_attention_explicit_products_equal_sdpa():
    """scripts/bench_attention.py's explicit-products attention is the model's attention, masks included."""
    math_attention, _attention = bench_attention.math_attention, translate.model._attention
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 4, n, 8, generator=g, dtype=torch.float64) for n in (5, 7, 7))
    key_mask = torch.arange(7)[None, None, None, :] < torch.tensor([7, 4, 1])[:, None, None, None]
    torch.testing.assert_close(math_attention(q, k, v, mask=key_mask), _attention(q, k, v, mask=key_mask))
    q = torch.randn(3, 4, 7, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(math_attention(q, k, v, is_causal=True), _attention(q, k, v, is_causal=True))


def test_bench_decode_tiny_cpu_ct2_rows(tmp_path, spm_and_source):
    pytest.importorskip("ctranslate2")
    spm, src = spm_and_source
    out = tmp_path / "decode.json"
    bench_decode.main(["--device", "cpu", "--tiny", "--spm", str(spm), "--src", str(src), "--systems", "translate,ct2",
                       "--output", str(out)])
    rows = {r["system"]: r for r in json.loads(out.read_text())["rows"]}
    for name in ("ct2_beam4_forced_float32", "ct2_beam4_forced_int8", "ct2_greedy_forced_float32",
                 "ct2_greedy_forced_int8", "ct2_beam4_natural_float32"):
        assert rows[name]["error"] is None, rows[name]
        assert rows[name]["sentences_per_s"] > 0 and rows[name]["vs_translate"] > 0
    # Forced length: CTranslate2 generates exactly translate's tokens (one call per output limit).
    assert rows["ct2_beam4_forced_float32"]["generated_tokens"] == rows["translate_beam4_forced"]["generated_tokens"]
