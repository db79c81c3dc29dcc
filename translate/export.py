"""`translate export`: a checkpoint as a CTranslate2 model directory or a Hugging Face Marian one.

    translate export --checkpoint C --format ctranslate2 --output DIR [--quantization int8]
    translate export --checkpoint C --format huggingface --output DIR

CTranslate2 (`pip install -e ".[export]"`): a `ctranslate2.specs.TransformerSpec` filled from the
state dict and saved by the package itself (`validate`, `optimize`, `save`), not written by hand:
pre- or post-norm (`pre_norm`, with the final LayerNorms of pre-norm), the fused Q/K/V and K/V
projections as CTranslate2 fuses them, tied embeddings given as one array (CTranslate2 stores
them once), embeddings × √d_model, our sinusoidal table as the position encodings (CTranslate2's
own table puts all sines before all cosines; ours interleaves them), ReLU, LayerNorm ε = 1e-5. The
vocabulary is the pieces of spm.model in id order; the source gets EOS appended (`add_source_eos`)
and decoding starts from BOS, as ours does. spm.model is copied into the directory.

Hugging Face (`pip install -e ".[hf]"`): a `MarianMTModel` and a `MarianTokenizer` directory
(`source.spm` = `target.spm` = spm.model, `vocab.json`) that `from_pretrained` loads. Marian is
post-norm only, so a pre-norm checkpoint (model.norm_first: true) is refused. Marian's sinusoidal
table is not stored in its checkpoints and is rebuilt on load with all sines first, then all cosines:
column j of Marian's table is column perm[j] of ours, perm = (0, 2, 4, ..., 1, 3, 5, ...). So every
tensor that reads or writes the residual stream is permuted along d_model with the same perm
(embeddings and input-side projections on their input columns, output-side projections and
LayerNorms on their outputs). LayerNorm, attention and the feed-forward layer commute with a
permutation of that axis, so the Marian model computes our function exactly, up to float rounding.

An existing non-empty --output is left alone unless --overwrite; the new directory is built beside
it and renamed into place only once complete.
"""

from __future__ import annotations

import enum
import json
import os
import shutil
from functools import partial
from pathlib import Path

import torch

from translate.config import Config
from translate.errors import UserError
from translate.model import Transformer
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which translate.model uses


class Format(str, enum.Enum):
    CTRANSLATE2 = "ctranslate2"
    HUGGINGFACE = "huggingface"


def unsupported_settings(cfg: Config, fmt: Format) -> list[str]:
    """What in the model's config the format cannot express, one line each (empty: exportable)."""
    problems = []
    if fmt == Format.HUGGINGFACE and cfg.model.norm_first:
        problems.append("model.norm_first is true (pre-norm), and Hugging Face Marian is post-norm only: export "
                        "this checkpoint with --format ctranslate2, or train with model.norm_first: false")
    return problems


def run_export(args) -> int:
    """The `translate export` command."""
    from translate.evaluate import load_for_inference

    fmt = Format(args.format)
    if args.quantization and fmt != Format.CTRANSLATE2:
        raise UserError("--quantization applies to --format ctranslate2 only")
    output = Path(args.output)
    _check_output(output, overwrite=args.overwrite)
    if output.resolve() in Path(args.checkpoint).resolve().parents:
        raise UserError(f"--output {output} holds the checkpoint {args.checkpoint}: choose a directory of its own")
    _import("ctranslate2", extra="export") if fmt == Format.CTRANSLATE2 else _import("transformers", extra="hf")
    model, tokenizer, cfg = load_for_inference(Path(args.checkpoint), torch.device("cpu"))
    problems = unsupported_settings(cfg, fmt)
    if problems:
        raise UserError(f"cannot export {args.checkpoint} as {fmt.value}: " + "; ".join(problems))
    if fmt == Format.CTRANSLATE2:
        write = partial(write_ctranslate2, quantization=args.quantization)
    else:
        write = write_huggingface
    _write_atomically(output, lambda directory: write(model, tokenizer, directory))
    print(f"exported {args.checkpoint} as {fmt.value} to {output}")
    return 0


# ---------------------------------------------------------------------------------------------
# CTranslate2


def write_ctranslate2(model: Transformer, tokenizer: Tokenizer, directory: Path, *,
                      quantization: str | None = None) -> None:
    """Save `model` as a CTranslate2 model directory, with spm.model beside its vocabulary."""
    spec = ctranslate2_spec(model, pieces(tokenizer))
    directory.mkdir(parents=True, exist_ok=True)
    spec.validate()
    spec.optimize(quantization=quantization)
    spec.save(str(directory))
    shutil.copyfile(tokenizer.model_file, directory / "spm.model")


def ctranslate2_spec(model: Transformer, vocabulary: list[str]):
    """A filled `ctranslate2.specs.TransformerSpec` of `model` (eval weights, float32)."""
    _import("ctranslate2", extra="export")
    from ctranslate2.specs import common_spec, transformer_spec

    c = model.cfg
    spec = transformer_spec.TransformerSpec.from_config(
        (c.n_encoder_layers, c.n_decoder_layers), c.n_heads, pre_norm=c.norm_first,
        activation=common_spec.Activation.RELU)
    weights = {name: tensor.detach().float().cpu().numpy() for name, tensor in model.state_dict().items()}
    positions = model.positions.detach().float().cpu().numpy()  # (P, D) our interleaved table
    encoder, decoder = spec.encoder, spec.decoder

    encoder.embeddings[0].weight = weights["src_embed.weight"]
    encoder.scale_embeddings = True  # × √d_model
    encoder.position_encodings.encodings = positions
    for i, layer in enumerate(encoder.layer):
        p = f"encoder_layers.{i}."
        _attention(layer.self_attention, weights, p + "self_attn.", fused=[p + "self_attn.qkv"])
        _norm(layer.self_attention.layer_norm, weights, p + "attn_block.norm")
        _ffn(layer.ffn, weights, p)

    decoder.embeddings.weight = weights["tgt_embed.weight"]
    decoder.scale_embeddings = True
    decoder.position_encodings.encodings = positions
    _linear(decoder.projection, weights, "output_proj")
    for i, layer in enumerate(decoder.layer):
        p = f"decoder_layers.{i}."
        _attention(layer.self_attention, weights, p + "self_attn.", fused=[p + "self_attn.qkv"])
        _norm(layer.self_attention.layer_norm, weights, p + "self_attn_block.norm")
        _attention(layer.attention, weights, p + "cross_attn.", fused=[p + "cross_attn.q", p + "cross_attn.kv"])
        _norm(layer.attention.layer_norm, weights, p + "cross_attn_block.norm")
        _ffn(layer.ffn, weights, p)
    if c.norm_first:
        _norm(encoder.layer_norm, weights, "encoder_norm")
        _norm(decoder.layer_norm, weights, "decoder_norm")

    spec.register_source_vocabulary(vocabulary)
    spec.register_target_vocabulary(vocabulary)
    config = spec.config
    config.unk_token, config.bos_token, config.eos_token = vocabulary[UNK_ID], vocabulary[BOS_ID], vocabulary[EOS_ID]
    config.decoder_start_token = vocabulary[BOS_ID]  # the decoder reads [bos] + pieces
    config.add_source_eos = True  # the encoder reads pieces + [eos]
    config.layer_norm_epsilon = LAYER_NORM_EPS
    return spec


def _attention(spec, weights: dict, prefix: str, *, fused: list[str]) -> None:
    """CTranslate2's linear list: self-attention [Q/K/V fused, out]; cross-attention [Q, K/V fused, out]
    (the same row order as our fused `qkv` and `kv`)."""
    for linear_spec, name in zip(spec.linear, [*fused, prefix + "out"], strict=True):
        _linear(linear_spec, weights, name)


def _ffn(spec, weights: dict, prefix: str) -> None:
    _norm(spec.layer_norm, weights, prefix + "ff_block.norm")
    _linear(spec.linear_0, weights, prefix + "ff.w1")
    _linear(spec.linear_1, weights, prefix + "ff.w2")


def _linear(spec, weights: dict, name: str) -> None:
    spec.weight = weights[f"{name}.weight"]
    if f"{name}.bias" in weights:
        spec.bias = weights[f"{name}.bias"]


def _norm(spec, weights: dict, name: str) -> None:
    spec.gamma, spec.beta = weights[f"{name}.weight"], weights[f"{name}.bias"]


def pieces(tokenizer: Tokenizer) -> list[str]:
    """The vocabulary in id order: <pad>, <unk>, <s>, </s>, then the learned pieces."""
    return [tokenizer.sp.IdToPiece(i) for i in range(tokenizer.vocab_size)]


# ---------------------------------------------------------------------------------------------
# Hugging Face Marian


def write_huggingface(model: Transformer, tokenizer: Tokenizer, directory: Path) -> None:
    """Save `model` (post-norm) as a MarianMTModel + MarianTokenizer directory."""
    transformers = _import("transformers", extra="hf")
    directory.mkdir(parents=True, exist_ok=True)
    config = marian_config(model.cfg, vocab_size=tokenizer.vocab_size)
    marian = transformers.MarianMTModel(config)
    missing, unexpected = marian.load_state_dict(marian_state_dict(model), strict=False)
    assert not unexpected and all("embed_positions" in k for k in missing), (missing, unexpected)
    # generate's defaults: beam 4, α 0.6 (in HF's L^α form), pad and BOS never produced, and the
    # position table as the length limit instead of HF's default of 20 tokens.
    marian.generation_config = transformers.GenerationConfig(
        num_beams=4, length_penalty=0.6, max_length=model.cfg.max_positions, bad_words_ids=[[PAD_ID], [BOS_ID]],
        forced_eos_token_id=EOS_ID, decoder_start_token_id=BOS_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
        pad_token_id=PAD_ID)
    marian.save_pretrained(directory)
    for name in ("source.spm", "target.spm"):
        shutil.copyfile(tokenizer.model_file, directory / name)
    (directory / "vocab.json").write_text(json.dumps({piece: i for i, piece in enumerate(pieces(tokenizer))},
                                                     ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "MarianTokenizer", "unk_token": "<unk>", "eos_token": "</s>", "pad_token": "<pad>",
         "model_max_length": model.cfg.max_positions - 1, "separate_vocabs": False}, indent=2) + "\n")


def marian_config(c, *, vocab_size: int):
    """A MarianConfig of translate's model `c` (a ModelConfig): post-norm, ReLU, embeddings × √d,
    sinusoidal positions, tied or untied embeddings; translate's special ids (pad 0, BOS 2, EOS 3)."""
    from transformers import MarianConfig

    return MarianConfig(
        vocab_size=vocab_size, decoder_vocab_size=vocab_size, d_model=c.d_model,
        encoder_layers=c.n_encoder_layers, decoder_layers=c.n_decoder_layers,
        encoder_attention_heads=c.n_heads, decoder_attention_heads=c.n_heads,
        encoder_ffn_dim=c.d_ff, decoder_ffn_dim=c.d_ff, activation_function="relu",
        dropout=c.dropout, attention_dropout=c.attention_dropout, activation_dropout=c.activation_dropout,
        max_position_embeddings=c.max_positions, scale_embedding=True,
        share_encoder_decoder_embeddings=c.share_embeddings, tie_word_embeddings=c.share_embeddings,
        pad_token_id=PAD_ID, eos_token_id=EOS_ID, bos_token_id=BOS_ID, decoder_start_token_id=BOS_ID)


def marian_permutation(d_model: int) -> torch.Tensor:
    """perm (D,): Marian's sinusoid column j is our column perm[j] (sines of ours at even columns)."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


def marian_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our weights under Marian's names, permuted along d_model (see the module docstring)."""
    perm = marian_permutation(model.cfg.d_model)
    w = {name: tensor.detach().float().cpu() for name, tensor in model.state_dict().items()}
    reads = lambda t: t[:, perm].contiguous()  # noqa: E731  weight (out, D): input columns
    writes = lambda t: t[perm].contiguous()  # noqa: E731  weight (D, in), bias or LayerNorm (D,)
    out = {}

    def linear(hf: str, weight: torch.Tensor, bias: torch.Tensor, *, reading: bool) -> None:
        out[f"{hf}.weight"] = reads(weight) if reading else writes(weight)
        out[f"{hf}.bias"] = bias.clone() if reading else writes(bias)

    def norm(hf: str, ours: str) -> None:
        out[f"{hf}.weight"], out[f"{hf}.bias"] = writes(w[f"{ours}.weight"]), writes(w[f"{ours}.bias"])

    def attention(hf: str, ours: str, projections: list[tuple[str, str, int]]) -> None:
        """projections: (hf name, our fused name, block) with block the row block of our fused matrix."""
        for hf_name, fused, block in projections:
            weight, bias = w[f"{ours}.{fused}.weight"], w[f"{ours}.{fused}.bias"]
            rows = slice(block * model.cfg.d_model, (block + 1) * model.cfg.d_model)
            linear(f"{hf}.{hf_name}", weight[rows], bias[rows], reading=True)
        linear(f"{hf}.out_proj", w[f"{ours}.out.weight"], w[f"{ours}.out.bias"], reading=False)

    def ffn(hf: str, ours: str) -> None:
        linear(f"{hf}.fc1", w[f"{ours}.ff.w1.weight"], w[f"{ours}.ff.w1.bias"], reading=True)
        linear(f"{hf}.fc2", w[f"{ours}.ff.w2.weight"], w[f"{ours}.ff.w2.bias"], reading=False)
        norm(f"{hf}.final_layer_norm", f"{ours}.ff_block.norm")

    self_projections = [("q_proj", "qkv", 0), ("k_proj", "qkv", 1), ("v_proj", "qkv", 2)]
    for i in range(model.cfg.n_encoder_layers):
        hf, ours = f"model.encoder.layers.{i}", f"encoder_layers.{i}"
        attention(f"{hf}.self_attn", f"{ours}.self_attn", self_projections)
        norm(f"{hf}.self_attn_layer_norm", f"{ours}.attn_block.norm")
        ffn(hf, ours)
    for i in range(model.cfg.n_decoder_layers):
        hf, ours = f"model.decoder.layers.{i}", f"decoder_layers.{i}"
        attention(f"{hf}.self_attn", f"{ours}.self_attn", self_projections)
        norm(f"{hf}.self_attn_layer_norm", f"{ours}.self_attn_block.norm")
        attention(f"{hf}.encoder_attn", f"{ours}.cross_attn", [("q_proj", "q", 0), ("k_proj", "kv", 0),
                                                                ("v_proj", "kv", 1)])
        norm(f"{hf}.encoder_attn_layer_norm", f"{ours}.cross_attn_block.norm")
        ffn(hf, ours)

    src, tgt, proj = reads(w["src_embed.weight"]), reads(w["tgt_embed.weight"]), reads(w["output_proj.weight"])
    out["model.encoder.embed_tokens.weight"], out["model.decoder.embed_tokens.weight"] = src, tgt
    out["lm_head.weight"] = proj
    if model.cfg.share_embeddings:
        out["model.shared.weight"] = src
    out["final_logits_bias"] = torch.zeros(1, w["output_proj.weight"].shape[0])
    return out


# ---------------------------------------------------------------------------------------------
# Output directory


def _check_output(output: Path, *, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file, not a directory: choose another path")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise UserError(f"--output {output} exists and is not empty: choose another directory, or pass "
                        "--overwrite to replace it")


def _write_atomically(output: Path, write) -> None:
    """write(directory) into a fresh directory beside `output`, then put it in `output`'s place; a
    failure leaves `output` as it was."""
    staging, previous = (output.with_name(f".{output.name}.{what}-{os.getpid()}") for what in ("new", "old"))
    for leftover in (staging, previous):  # of an earlier run of this process id that was killed
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)  # the user's umask, unlike a mkdtemp directory
    try:
        write(staging)
        if output.exists():
            output.rename(previous)
            staging.rename(output)
            shutil.rmtree(previous)
        else:
            staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _import(module: str, *, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise UserError(f"exporting needs the `{module}` package: pip install -e \".[{extra}]\"") from None
