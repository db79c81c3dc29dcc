"""`translate export`: CTranslate2 and Hugging Face Marian models that compute and translate like ours."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from translate.cli import main
from translate.config import ModelConfig
from translate.corpus import read_pairs
from translate.evaluate import DecodeOptions, load_for_inference, score
from translate.export import marian_permutation, marian_state_dict, write_ctranslate2, write_huggingface
from translate.exported import gnmt_best, limit_groups, translate_ctranslate2, translate_marian
from translate.model import Transformer
from translate.tokenizer import PAD_ID, Tokenizer

from conftest import PAIRS, tiny_config

SMALL = dict(d_model=32, n_heads=4, d_ff=48, n_encoder_layers=2, n_decoder_layers=2, max_positions=64, dropout=0.0)


def random_model(tokenizer: Tokenizer, **overrides) -> Transformer:
    """A random model whose outputs are far from uniform (larger weights than the initialisation's),
    so that a wrong mapping shows in the log-probabilities."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**{**SMALL, **overrides}), vocab_size=tokenizer.vocab_size, pad_id=PAD_ID)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn_like(p))  # LayerNorm gains and biases away from 1 and 0
            else:
                p.mul_(2.0)
    return model.eval()


def our_log_probs(model: Transformer, src: list[int], tgt: list[int]) -> torch.Tensor:
    """log p of each target token + EOS under teacher forcing (T + 1,)."""
    with torch.no_grad():
        s, t = torch.tensor([src + [3]]), torch.tensor([[2] + tgt])
        lp = model(s, t, s == PAD_ID).log_softmax(-1)[0]  # (T + 1, V)
    return lp.gather(1, torch.tensor(tgt + [3])[:, None])[:, 0]


# ---------------------------------------------------------------------------------------------
# The mapping of weights, on random models (no training)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("share_embeddings", [True, False], ids=["tied", "untied"])
def test_ctranslate2_scores_like_our_model(small_spm, tmp_path, norm_first, share_embeddings):
    ctranslate2 = pytest.importorskip("ctranslate2")
    tokenizer = Tokenizer(small_spm)
    model = random_model(tokenizer, norm_first=norm_first, share_embeddings=share_embeddings)
    write_ctranslate2(model, tokenizer, tmp_path / "ct2")
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu")
    sources, targets = [en for en, _ in PAIRS[:6]], [de for _, de in PAIRS[:6]]
    results = translator.score_batch([tokenizer.sp.Encode(s, out_type=str) for s in sources],
                                     [tokenizer.sp.Encode(t, out_type=str) for t in targets])
    for source, target, result in zip(tokenizer.encode(sources), tokenizer.encode(targets), results):
        ours = our_log_probs(model, source, target)
        assert torch.allclose(torch.tensor(result.log_probs), ours, atol=1e-4), (result.log_probs, ours)
        assert ours.min() < -1.0  # not a uniform-ish model that anything would match


@pytest.mark.parametrize("share_embeddings", [True, False], ids=["tied", "untied"])
def test_marian_logits_equal_ours(small_spm, tmp_path, share_embeddings):
    """A forced decode through the saved and reloaded MarianMTModel gives our logits (the d_model
    permutation undoes Marian's other sinusoid layout)."""
    transformers = pytest.importorskip("transformers")
    tokenizer = Tokenizer(small_spm)
    model = random_model(tokenizer, share_embeddings=share_embeddings)
    write_huggingface(model, tokenizer, tmp_path / "hf")
    marian = transformers.MarianMTModel.from_pretrained(tmp_path / "hf").eval()
    hf_tokenizer = transformers.MarianTokenizer.from_pretrained(tmp_path / "hf")
    sources, targets = [en for en, _ in PAIRS[:6]], [de for _, de in PAIRS[:6]]
    batch = hf_tokenizer(sources, return_tensors="pt", padding=True)
    assert [ids + [3] for ids in tokenizer.encode(sources)] == [
        [t for t in row if t != PAD_ID] for row in batch.input_ids.tolist()]
    tgt = torch.nn.utils.rnn.pad_sequence([torch.tensor([2] + ids) for ids in tokenizer.encode(targets)],
                                          batch_first=True, padding_value=PAD_ID)
    with torch.no_grad():
        theirs = marian(input_ids=batch.input_ids, attention_mask=batch.attention_mask, decoder_input_ids=tgt).logits
        ours = model(batch.input_ids, tgt, batch.input_ids == PAD_ID)
    real = tgt != PAD_ID  # (B, T) logits at padded target positions are not compared
    assert torch.allclose(theirs[real], ours[real], atol=1e-4), (theirs[real] - ours[real]).abs().max()
    assert ours[real].std() > 1.0


def test_marian_sinusoids_are_ours_permuted(small_spm):
    from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

    model = random_model(Tokenizer(small_spm))
    marian = MarianSinusoidalPositionalEmbedding(64, 32).create_weight()
    assert torch.allclose(marian, model.positions[:, marian_permutation(32)], atol=1e-6)
    assert not torch.allclose(marian, model.positions, atol=1e-2)  # the layouts do differ


def test_marian_state_dict_covers_every_weight(small_spm):
    transformers = pytest.importorskip("transformers")
    from translate.export import marian_config

    model = random_model(Tokenizer(small_spm))
    marian = transformers.MarianMTModel(marian_config(model.cfg, vocab_size=model.src_embed.num_embeddings))
    missing, unexpected = marian.load_state_dict(marian_state_dict(model), strict=False)
    assert not unexpected and sorted(missing) == ["model.decoder.embed_positions.weight",
                                                  "model.encoder.embed_positions.weight"]


# ---------------------------------------------------------------------------------------------
# The pure helpers of translate.exported


def test_gnmt_best_ranks_by_the_gnmt_penalty():
    short, long = ([5, 3], -1.0), ([5, 6, 7, 8, 9, 10, 3], -1.6)
    assert gnmt_best([short, long], lenpen=0.0) == short[0]  # plain log-probability
    # GNMT α = 1: -1.0 / (7/6) = -0.857 vs -1.6 / (12/6) = -0.8: the longer one wins.
    assert gnmt_best([short, long], lenpen=1.0) == long[0]


def test_limit_groups_follow_the_beam_search_limit():
    options = DecodeOptions(max_len_a=1.5, max_len_b=2)
    groups = limit_groups([[7], [7, 7], [], [7, 7, 7], [7] * 40], options=options, max_positions=30)
    # src_len counts EOS: int(1.5 * 2 + 2) = 5, int(1.5 * 3 + 2) = 6, int(1.5 * 4 + 2) = 8; capped at 29.
    assert groups == {5: [0], 6: [1], 8: [3], 29: [4]}


# ---------------------------------------------------------------------------------------------
# Translations of the demo test set (200 lines) against `translate translate`


def translate_command(checkpoint, sources: list[str], tmp_path, *, lenpen: float) -> list[str]:
    """`translate translate --beam 4 --lenpen A` of `sources`, through the CLI."""
    src = tmp_path / "src.txt"
    src.write_text("".join(s + "\n" for s in sources), encoding="utf-8")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["translate", "--checkpoint", str(checkpoint), "--input", str(src), "--beam", "4",
                     "--lenpen", str(lenpen)]) == 0
    return out.getvalue().splitlines()


def agreement(ours: list[str], theirs: list[str], references: list[str]) -> tuple[int, float]:
    """(identical lines, BLEU difference)."""
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    return same, score(theirs, references)["bleu"] - score(ours, references)["bleu"]


def test_ctranslate2_translates_the_demo_like_translate(demo_run, tmp_path):
    """The demo model (pre-norm, tied), exported by the CLI, beam 4, α 0.6."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    checkpoint = demo_run / "checkpoint_best.pt"
    model, tokenizer, cfg = load_for_inference(checkpoint, torch.device("cpu"))
    pairs = list(read_pairs(cfg.data.test, src_lang=cfg.data.src_lang, tgt_lang=cfg.data.tgt_lang))
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    ours = translate_command(checkpoint, sources, tmp_path, lenpen=0.6)
    assert len(ours) == 200 and score(ours, references)["bleu"] > 50  # a model that translates

    assert main(["export", "--checkpoint", str(checkpoint), "--format", "ctranslate2", "--output",
                 str(tmp_path / "ct2")]) == 0
    assert (tmp_path / "ct2" / "spm.model").read_bytes() == (demo_run / "spm.model").read_bytes()
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu")
    theirs = translate_ctranslate2(translator, tokenizer, sources, options=DecodeOptions(beam=4, lenpen=0.6),
                                   max_positions=cfg.model.max_positions)
    same, bleu_gap = agreement(ours, theirs, references)
    assert same >= 195 and abs(bleu_gap) <= 0.5, (same, bleu_gap)


def test_marian_searches_like_translate_without_length_penalty(small_spm, tmp_path):
    """A post-norm model (random: Marian cannot take the pre-norm demo model) through the exported
    directory and `generate`, beam 4: at α = 0 the two searches are the same algorithm, so the
    lines are identical. (At α > 0 the penalties differ in form: docs/EXPORT.md.)"""
    transformers = pytest.importorskip("transformers")
    from translate.synthetic import generate_pairs

    checkpoint = save_random_checkpoint(tmp_path, small_spm, norm_first=False)
    model, tokenizer, cfg = load_for_inference(checkpoint, torch.device("cpu"))
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "huggingface", "--output",
                 str(tmp_path / "hf")]) == 0
    marian = transformers.MarianMTModel.from_pretrained(tmp_path / "hf").eval()
    hf_tokenizer = transformers.MarianTokenizer.from_pretrained(tmp_path / "hf")
    sources = [en for en, _ in generate_pairs(40, seed=3)]
    ours = translate_command(checkpoint, sources, tmp_path, lenpen=0.0)
    theirs = translate_marian(marian, hf_tokenizer, sources, options=DecodeOptions(beam=4, lenpen=0.0),
                              max_positions=cfg.model.max_positions)
    assert ours == theirs
    assert len(set(ours)) > 10  # different sentences, not one degenerate output


def save_random_checkpoint(tmp_path, spm_file, **model) -> Path:
    """A checkpoint of `random_model` with its spm.model beside it, as training would leave it."""
    from translate.checkpoint import save_checkpoint
    from translate.config import config_from_dict, config_to_dict

    shutil.copyfile(spm_file, tmp_path / "spm.model")
    tokenizer = Tokenizer(tmp_path / "spm.model")
    state = random_model(tokenizer, **model).state_dict()
    cfg = config_to_dict(config_from_dict(tiny_config(tmp_path, model=dict(SMALL, **model)), source="test"))
    save_checkpoint({"model": state, "config": cfg, "tokenizer": "spm.model", "vocab_size": tokenizer.vocab_size,
                     "step": 0}, tmp_path / "checkpoint.pt")
    return tmp_path / "checkpoint.pt"


# ---------------------------------------------------------------------------------------------
# The command's errors


def test_export_never_overwrites_unasked(small_spm, tmp_path, capsys):
    pytest.importorskip("ctranslate2")
    checkpoint = save_random_checkpoint(tmp_path, small_spm)
    output = tmp_path / "model"
    output.mkdir()
    (output / "mine.txt").write_text("keep me")
    argv = ["export", "--checkpoint", str(checkpoint), "--format", "ctranslate2", "--output", str(output)]
    assert main(argv) == 2
    assert "exists and is not empty" in capsys.readouterr().err and (output / "mine.txt").read_text() == "keep me"
    assert main(argv + ["--overwrite", "--quantization", "int8"]) == 0
    assert not (output / "mine.txt").exists() and json.loads((output / "config.json").read_text())["add_source_eos"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging directory left behind
    # The run directory itself is never replaced, --overwrite or not.
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "ctranslate2", "--output", str(tmp_path),
                 "--overwrite"]) == 2
    assert "holds the checkpoint" in capsys.readouterr().err and checkpoint.is_file()


def test_pre_norm_to_marian_is_one_clear_error(small_spm, tmp_path, capsys):
    """Marian has no pre-norm: exit 2, the setting named, nothing written."""
    checkpoint = save_random_checkpoint(tmp_path, small_spm, norm_first=True)
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "huggingface",
                 "--output", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert "model.norm_first" in err and "Traceback" not in err and not (tmp_path / "hf").exists()
