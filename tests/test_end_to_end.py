"""End to end through the CLI: train the demo model briefly, then eval, translate and average it."""

import json
import subprocess
import sys

import pytest
import torch

from translate.checkpoint import load_checkpoint
from translate.cli import main
from translate.corpus import read_pairs
from translate.evaluate import DecodeOptions, load_for_inference, translate_sentences

from conftest import REPO


def test_demo_learns_to_translate(demo_run, capsys):
    capsys.readouterr()
    output = demo_run / "hyp.txt"
    assert main(["eval", "--checkpoint", str(demo_run / "checkpoint_best.pt"), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "BLEU" in printed and "nrefs:1|case:mixed|eff:no|tok:13a" in printed
    result = json.loads(output.with_suffix(".json").read_text())
    assert result["bleu"] > 50, result
    assert result["sentences"] == 200 and len(output.read_text().splitlines()) == 200
    valid = [json.loads(line) for line in (demo_run / "metrics.jsonl").read_text().splitlines()
             if '"valid"' in line]
    assert valid[-1]["ppl"] < 2.5  # low dev perplexity


def test_a_healthy_demo_run_is_never_called_collapsed(demo_run):
    """The collapse rule (translate/collapse.py) at both validations of a model that learns: sure of
    itself (so the hypothesis rules apply), and nothing tripped."""
    from translate.collapse import CONFIDENT, collapse_signs

    valid = [json.loads(line) for line in (demo_run / "metrics.jsonl").read_text().splitlines() if '"valid"' in line]
    assert [r["step"] for r in valid] == [300, 600]
    assert valid[-1]["confidence"] > CONFIDENT
    for record in valid:
        assert "collapse" not in record and collapse_signs(record) == []
    assert "looks collapsed" not in (demo_run / "train.log").read_text()


def test_bfloat16_decoding_translates_like_float32(demo_run, tmp_path):
    outputs, bleu = {}, {}
    for dtype in ("float32", "bfloat16"):
        output = tmp_path / f"hyp_{dtype}.txt"
        assert main(["eval", "--checkpoint", str(demo_run / "checkpoint_best.pt"), "--dtype", dtype,
                     "--output", str(output)]) == 0
        result = json.loads(output.with_suffix(".json").read_text())
        assert result["dtype"] == dtype, result
        outputs[dtype], bleu[dtype] = output.read_text().splitlines(), result["bleu"]
    same = sum(a == b for a, b in zip(outputs["float32"], outputs["bfloat16"]))
    assert len(outputs["bfloat16"]) == 200 and same >= 195, same  # rounding may flip a near-tie (3 of 200 here)
    assert bleu["bfloat16"] == pytest.approx(bleu["float32"], abs=1.0)


def test_bfloat16_static_shape_decoding_translates_like_float32(demo_run):
    """The --cuda-graphs search (static shapes, no graph on the CPU) in bf16, whose single-query attention
    rounds the scores to bf16, against the default float32 search."""
    checkpoint, device = demo_run / "checkpoint_best.pt", torch.device("cpu")
    outputs = {}
    for dtype, static in ((torch.float32, False), (torch.bfloat16, True)):
        model, tokenizer, cfg = load_for_inference(checkpoint, device, dtype)
        sources = [s for s, _ in read_pairs(cfg.data.test, src_lang=cfg.data.src_lang, tgt_lang=cfg.data.tgt_lang)]
        outputs[static] = translate_sentences(model, tokenizer, sources, options=DecodeOptions(cuda_graphs=static),
                                              device=device)
    same = sum(a == b for a, b in zip(outputs[False], outputs[True]))
    assert len(outputs[True]) == 200 and same >= 195, same  # 197 of 200 when written, as the default bf16 search


def test_cuda_graphs_on_the_cpu_is_one_clear_error(demo_run, capsys):
    assert main(["eval", "--checkpoint", str(demo_run / "checkpoint_best.pt"), "--device", "cpu", "--cuda-graphs"]) == 2
    assert "--cuda-graphs needs a CUDA device, and this run decodes on cpu" in capsys.readouterr().err


def test_eval_scores_references_against_themselves(demo_run, tmp_path, capsys):
    src = tmp_path / "src.txt"
    ref = tmp_path / "ref.txt"
    src.write_text("The dog sees the cat.\nThe small child sleeps.\n")
    ref.write_text("Der Hund sieht die Katze.\nDas kleine Kind schläft.\n")
    assert main(["eval", "--checkpoint", str(demo_run / "checkpoint_best.pt"), "--src", str(src), "--ref", str(ref),
                 "--beam", "1", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["sentences"] == 2
    from translate.evaluate import score

    assert score(["Der Hund sieht die Katze."], ["Der Hund sieht die Katze."])["bleu"] == 100.0
    with pytest.raises(Exception, match="hypotheses are empty"):
        score(["", ""], ["a", "b"])


def test_translate_pipes_stdin_to_stdout_in_order(demo_run):
    lines = "The dog sees the cat.\n\nThe small child sleeps.\n"
    result = subprocess.run([sys.executable, "-m", "translate", "translate", "--checkpoint",
                             str(demo_run / "checkpoint_best.pt")], input=lines, capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert len(out) == 3 and out[1] == ""  # an empty line stays an empty line
    assert out[0] == "Der Hund sieht die Katze."
    assert out[2] == "Das kleine Kind schläft."


def test_average_checkpoints(demo_run, capsys):
    output = demo_run / "averaged.pt"
    assert main(["average", "--last", "2", str(demo_run), "--output", str(output)]) == 0
    averaged = load_checkpoint(output)
    a = load_checkpoint(demo_run / "checkpoint_step300.pt")
    b = load_checkpoint(demo_run / "checkpoint_step600.pt")
    key = "encoder_layers.0.ff.linear1.weight" if "encoder_layers.0.ff.linear1.weight" in a["model"] else next(
        k for k in a["model"] if a["model"][k].is_floating_point() and a["model"][k].ndim == 2)
    assert ((a["model"][key] + b["model"][key]) / 2 - averaged["model"][key]).abs().max() < 1e-6
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(output), "--beam", "1"]) == 0
    assert main(["average", "--last", "9", str(demo_run), "--output", str(demo_run / "x.pt")]) == 2
    assert "not 9" in capsys.readouterr().err
