"""The Transformer encoder-decoder of Vaswani et al. (2017), "Attention Is All You Need".

    memory = encode(src, src_pad_mask)                        # (B, S, D)
    logits = project(decode_hidden(tgt, memory, src_pad_mask))  # (B, T, V)

Training calls `forward` (teacher forcing on the whole target at once, causal self-attention);
decoding calls `decode` one token at a time with a `DecoderCache` (see `new_cache`), which gives the
same logits as the uncached call (tests/test_model.py proves it). With `train.compile`, the uncached
path runs each layer through torch.compile (`compile_layers`); the cached steps stay eager.

Layers are post-norm, LayerNorm(x + Dropout(Sublayer(x))), as in the paper, or pre-norm,
x + Dropout(Sublayer(LayerNorm(x))), with a final LayerNorm on the encoder and decoder outputs
(`cfg.norm_first`). Attention is `F.scaled_dot_product_attention` (fused kernels on the GPU).

Parameter initialisation (fairseq's, which reproduces the paper's results):
  - linear weights: xavier_uniform, U(±sqrt(6 / (fan_in + fan_out))); the fused Q/K/V and K/V
    projections block by block, as if each D×D block were a separate matrix; biases zero;
  - embeddings: normal(0, d_model^-0.5) with the pad row zeroed. They are multiplied by
    sqrt(d_model) on lookup, so the input to the first layer has unit scale; when the output
    projection is tied to them, logits = h · E^T start with unit scale too. An untied output
    projection gets the same normal(0, d_model^-0.5);
  - LayerNorm: weight 1, bias 0 (PyTorch's default).
`model.init: hf` instead draws every linear and embedding weight from normal(0, 0.02) (Hugging Face
Marian's), biases zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from translate.config import Init, ModelConfig


def sinusoidal_positions(n_positions: int, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i / d_model)),  PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (P, 1)
    inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (ceil(D/2),)
    angles = position * inv_freq  # (P, ceil(D/2))
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = angles.sin()
    table[:, 1::2] = angles[:, : d_model // 2].cos()
    return table.float()  # (P, D)


def _split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, T, D = x.shape
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)  # (B, H, T, dh)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    B, H, T, dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * dh)  # (B, T, D)


def _attention(q, k, v, *, mask=None, is_causal=False, dropout=0.0) -> torch.Tensor:
    """softmax(Q K^T / sqrt(dh) + mask) V over heads: q (B, H, T, dh), k and v (B, H, S, dh) -> (B, T, D).

    cuDNN's attention kernel is left out: it builds a new plan (slow; docs/PERFORMANCE.md) for every
    new shape, and length-bucketed batches and step-by-step decoding make nearly every shape new.
    """
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal)
    return _merge_heads(y)


def _single_query_attention(q, k, v, *, mask) -> torch.Tensor:
    """`_attention` for one query per row, as two batched products: q (B, H, 1, dh), k and v
    (B, H, S, dh), mask (B or 1, 1, 1, S) True = attend -> (B, 1, D).

    For the static decoding step (`Transformer.decode_step`), replayed as a CUDA graph, where extra
    kernels cost no launch time: SDPA's masked kernel computes a tile of queries for the one there is
    (what it cost and what this gave are in docs/PERFORMANCE.md). The softmax is in float32 (or wider). Masked keys get the dtype's lowest
    finite value rather than −inf, so a row with every key masked (a source of padding only) averages
    its values instead of giving NaN; any other row's weights are the same, exp underflowing to 0.
    """
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))  # (B, H, 1, S)
    weights = scores.to(torch.promote_types(scores.dtype, torch.float32))  # float32, or float64 in tests
    weights = weights.masked_fill(~mask, torch.finfo(weights.dtype).min).softmax(dim=-1)
    return _merge_heads(torch.matmul(weights.to(v.dtype), v))


class SelfAttention(nn.Module):
    """Multi-head self-attention, softmax(Q K^T / sqrt(dh)) V, with one fused Q/K/V projection."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.attention_dropout = cfg.attention_dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x, *, key_mask=None, is_causal=False, past=None):
        """x (B, T, D); key_mask (B, 1, 1, T) True = attend; past = (k_buffer, v_buffer, start) or a
        StaticPast.

        With `past`, x holds the tokens at positions start..start+T-1: their keys and values are
        written into the (B, H, max_len, dh) buffers and the queries attend to the first start+T.
        """
        q, k, v = (_split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))  # (B, H, T, dh)
        if isinstance(past, StaticPast):  # one token; the whole buffers, masked after its position
            past.k.index_copy_(2, past.position.view(1), k)
            past.v.index_copy_(2, past.position.view(1), v)
            return self.out(_single_query_attention(q, past.k, past.v, mask=past.key_mask))
        elif past is not None:
            k_buffer, v_buffer, start = past
            T = x.shape[1]
            k_buffer[:, :, start : start + T] = k
            v_buffer[:, :, start : start + T] = v
            k, v = k_buffer[:, :, : start + T], v_buffer[:, :, : start + T]  # (B, H, start+T, dh)
            # A single new token may see every cached key; several need the causal mask shifted by start.
            key_mask = None if T == 1 else torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
            is_causal = False
        dropout = self.attention_dropout if self.training else 0.0
        return self.out(_attention(q, k, v, mask=key_mask, is_causal=is_causal, dropout=dropout))  # (B, T, D)


@dataclass
class StaticPast:
    """Self-attention state of a one-token decoding step whose position is a 0-dim tensor: the new
    key and value go to `position` of the (B, H, max_len, dh) buffers, and the query attends to all
    max_len positions under `key_mask` (1, 1, 1, max_len), True up to `position`. Every shape is the
    same at every step, so the step can be captured once as a CUDA graph and replayed."""

    k: torch.Tensor
    v: torch.Tensor
    position: torch.Tensor
    key_mask: torch.Tensor


class CrossAttention(nn.Module):
    """Multi-head attention from the decoder (queries) to the encoder memory (fused keys/values)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.attention_dropout = cfg.attention_dropout
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the memory (B, S, D), each (B, H, S, dh): computed once per sentence when decoding."""
        k, v = self.kv(memory).chunk(2, dim=-1)
        return _split_heads(k, self.n_heads), _split_heads(v, self.n_heads)

    def forward(self, x, *, memory_kv, key_mask, static_step: bool = False):
        """x (B, T, D); memory_kv from `memory_kv`; key_mask (B, 1, 1, S) True = attend; static_step:
        x is the one token of `Transformer.decode_step`."""
        q = _split_heads(self.q(x), self.n_heads)  # (B, H, T, dh)
        k, v = memory_kv
        if static_step:
            return self.out(_single_query_attention(q, k, v, mask=key_mask))
        dropout = self.attention_dropout if self.training else 0.0
        return self.out(_attention(q, k, v, mask=key_mask, dropout=dropout))  # (B, T, D)


class FeedForward(nn.Module):
    """FFN(x) = W2 · Dropout(ReLU(W1 x + b1)) + b2."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.w2 = nn.Linear(cfg.d_ff, cfg.d_model)
        self.dropout = nn.Dropout(cfg.activation_dropout)

    def forward(self, x):
        return self.w2(self.dropout(F.relu(self.w1(x))))


class Residual(nn.Module):
    """Post-norm LayerNorm(x + Dropout(Sublayer(x))) (the paper) or pre-norm x + Dropout(Sublayer(LayerNorm(x)))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.norm = nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, sublayer):
        if self.norm_first:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_attn = SelfAttention(cfg)
        self.ff = FeedForward(cfg)
        self.attn_block = Residual(cfg)
        self.ff_block = Residual(cfg)

    def forward(self, x, *, key_mask):
        x = self.attn_block(x, lambda h: self.self_attn(h, key_mask=key_mask))
        return self.ff_block(x, self.ff)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_attn = SelfAttention(cfg)
        self.cross_attn = CrossAttention(cfg)
        self.ff = FeedForward(cfg)
        self.self_attn_block = Residual(cfg)
        self.cross_attn_block = Residual(cfg)
        self.ff_block = Residual(cfg)

    def forward(self, x, *, memory_kv, memory_mask, past=None):
        # Training: target padding sits at the end, so the causal mask alone is right for real tokens.
        x = self.self_attn_block(x, lambda h: self.self_attn(h, is_causal=past is None, past=past))
        static_step = isinstance(past, StaticPast)
        x = self.cross_attn_block(x, lambda h: self.cross_attn(h, memory_kv=memory_kv, key_mask=memory_mask,
                                                               static_step=static_step))
        return self.ff_block(x, self.ff)


def as_words(*buffers: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The buffers viewed as 8-byte words along their last dimension, or all of them as they are
    where any one cannot be (its layout not in whole words).

    Copying cache rows with an index moves one element per index computation: as words, a bfloat16
    head of 64 values is 16 elements instead of 64. Same bytes, bit for bit; fewer, wider accesses.
    """
    def fits(buffer):
        per_word = 8 // buffer.element_size() if 8 % buffer.element_size() == 0 else 0
        return per_word > 0 and buffer.stride(-1) == 1 and buffer.shape[-1] % per_word == 0 and all(
            offset % per_word == 0 for offset in (buffer.storage_offset(), *buffer.stride()[:-1]))

    if all(fits(buffer) for buffer in buffers):
        return tuple(buffer.view(torch.int64) for buffer in buffers)
    return buffers


@dataclass
class DecoderCache:
    """Incremental decoding state: the keys/values of every target token decoded so far.

    Self-attention buffers are preallocated to `max_len` positions; only the first `length` are
    valid. Cross-attention keys/values are computed once from the memory. Rows are sentences
    (or beams); `reorder` keeps the rows named by `index`, in that order.
    """

    self_k: torch.Tensor  # (L, B, H, max_len, dh)
    self_v: torch.Tensor  # (L, B, H, max_len, dh)
    cross_k: torch.Tensor  # (L, B, H, S, dh)
    cross_v: torch.Tensor  # (L, B, H, S, dh)
    length: int = 0  # target positions decoded so far

    def reorder(self, index: torch.Tensor, *, cross: bool = True) -> None:
        """Keep rows `index` (N,), N ≤ B, e.g. the source beam of each surviving hypothesis.

        cross=False leaves the cross-attention keys/values as they are: right when every row moves
        to a row of the same sentence (a beam reorder), whose beams share them.
        """
        def select(buffer):  # into a new buffer of N rows
            return self._gather_filled(buffer, index, buffer.new_empty(buffer.shape[0], index.numel(),
                                                                       *buffer.shape[2:]))

        self.self_k, self.self_v = select(self.self_k), select(self.self_v)
        if cross:
            self.cross_k, self.cross_v = self.cross_k.index_select(1, index), self.cross_v.index_select(1, index)

    def reorder_in_place(self, index: torch.Tensor) -> None:
        """Row i continues from row index[i] (N,), N = B, in the same self-attention buffers: their
        addresses stay, as a CUDA graph that reads them needs (translate.decoders.StaticDecoder)."""
        for buffer in (self.self_k, self.self_v):
            self._gather_filled(buffer, index, buffer)  # the indexed rows are read whole before the write

    def _gather_filled(self, buffer: torch.Tensor, index: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out[:, i, :, :length] = buffer[:, index[i], :, :length]: only the filled positions, as words."""
        n = self.length
        out_words, buffer_words = as_words(out, buffer)
        out_words[:, :, :, :n] = buffer_words[:, index, :, :n]
        return out


class Transformer(nn.Module):
    """Encoder-decoder Transformer; see the module docstring for the equations and initialisation."""

    def __init__(self, cfg: ModelConfig, *, vocab_size: int, pad_id: int):
        super().__init__()
        self.cfg = cfg
        self.pad_id = pad_id
        D = cfg.d_model
        self.src_embed = nn.Embedding(vocab_size, D, padding_idx=pad_id)
        self.tgt_embed = nn.Embedding(vocab_size, D, padding_idx=pad_id)
        self.output_proj = nn.Linear(D, vocab_size, bias=False)
        if cfg.share_embeddings:  # one joint-vocabulary matrix for all three (nanoGPT's weight tying)
            self.tgt_embed.weight = self.src_embed.weight
            self.output_proj.weight = self.src_embed.weight
        # Not persistent: a pure function of the config, so checkpoints need not carry it.
        self.register_buffer("positions", sinusoidal_positions(cfg.max_positions, D), persistent=False)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_decoder_layers))
        # Pre-norm leaves the residual stream unnormalised: normalise it once at the end.
        self.encoder_norm = nn.LayerNorm(D) if cfg.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(D) if cfg.norm_first else nn.Identity()
        # The layers the uncached path calls: the eager ones, or their compiled wrappers (compile_layers).
        # Plain lists, not ModuleLists: the wrappers share the layers' parameters and add no state_dict keys.
        self._uncached_layers = (list(self.encoder_layers), list(self.decoder_layers))
        self._init_parameters()

    def compile_layers(self, compile_layer: Callable[[nn.Module], Callable]) -> None:
        """Run the uncached path (training, validation, encoding for decoding) through
        compile_layer(layer) for every layer (runtime.compile_layers passes torch.compile).

        Per layer rather than the whole model: layers of one class share one compiled graph per mode
        (training; validation's eval mode without gradients is a second), so compiling costs about one
        encoder and one decoder layer instead of twelve. Outside the graphs: the embeddings, the
        decoder's cross-attention keys and values (`memory_kv`), the final norms, the fused loss (compiled
        apart by `train.compile`), and the cached decoding steps, whose shapes change at every step.
        """
        self._uncached_layers = ([compile_layer(layer) for layer in self.encoder_layers],
                                 [compile_layer(layer) for layer in self.decoder_layers])

    def _init_parameters(self) -> None:
        if self.cfg.init == Init.HF:
            self._init_parameters_hf()
            return
        D = self.cfg.d_model
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                fused = name.endswith(("qkv", ".kv"))
                for block in module.weight.data.split(D) if fused else [module.weight.data]:
                    nn.init.xavier_uniform_(block)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # After the linear loop: when tied, output_proj.weight is the embedding and must end up normal.
        for weight in (self.src_embed.weight, self.tgt_embed.weight, self.output_proj.weight):
            nn.init.normal_(weight, mean=0.0, std=D**-0.5)
            weight.data[self.pad_id].zero_()

    def _init_parameters_hf(self) -> None:
        """Hugging Face Marian's: every linear and embedding weight normal(0, 0.02), biases zero, the
        pad row zeroed. With post-norm it learned faster per step than the default in a small CPU
        ablation (results/ablation_init_norm/README.md) and, at Transformer-base scale, as fast per
        step as HF Marian itself (configs/trainmix_postnorm.yaml, docs/RESULTS.md v4)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        for embedding in (self.src_embed, self.tgt_embed):
            embedding.weight.data[self.pad_id].zero_()

    def count_parameters(self) -> int:
        """Number of distinct trainable numbers (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())

    def _embed(self, embedding: nn.Embedding, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        T = tokens.shape[1]
        if start + T > self.positions.shape[0]:
            raise ValueError(f"a sequence of {start + T} tokens is longer than model.max_positions "
                             f"({self.positions.shape[0]})")
        x = embedding(tokens) * math.sqrt(self.cfg.d_model) + self.positions[start : start + T]  # (B, T, D)
        return self.embed_dropout(x)

    def encode(self, src: torch.Tensor, src_pad_mask: torch.Tensor) -> torch.Tensor:
        """src (B, S) token ids, src_pad_mask (B, S) True at padding -> memory (B, S, D)."""
        key_mask = ~src_pad_mask[:, None, None, :]  # (B, 1, 1, S) True = attend
        x = self._embed(self.src_embed, src)
        for layer in self._uncached_layers[0]:
            x = layer(x, key_mask=key_mask)
        return self.encoder_norm(x)

    def decode_hidden(self, tgt, memory, src_pad_mask, cache: DecoderCache | None = None) -> torch.Tensor:
        """tgt (B, T) -> final decoder states (B, T, D).

        Without a cache, tgt is the whole target prefix starting at position 0 (causal attention).
        With one, tgt holds only the new tokens, at positions cache.length..; the cache grows by T.
        """
        start = 0 if cache is None else cache.length
        memory_mask = ~src_pad_mask[:, None, None, :]  # (B, 1, 1, S) True = attend
        x = self._embed(self.tgt_embed, tgt, start)
        if cache is None:
            for layer, uncached in zip(self.decoder_layers, self._uncached_layers[1], strict=True):
                x = uncached(x, memory_kv=layer.cross_attn.memory_kv(memory), memory_mask=memory_mask)
        else:
            for i, layer in enumerate(self.decoder_layers):
                x = layer(x, memory_kv=(cache.cross_k[i], cache.cross_v[i]), memory_mask=memory_mask,
                          past=(cache.self_k[i], cache.self_v[i], start))
        if cache is not None:
            cache.length += tgt.shape[1]
        return self.decoder_norm(x)

    def decode_step(self, tokens: torch.Tensor, position: torch.Tensor, cache: DecoderCache,
                    memory_mask: torch.Tensor) -> torch.Tensor:
        """tokens (B,) at `position` (a 0-dim long tensor) -> logits (B, V), with static shapes (see
        StaticPast): the same as `decode(tokens[:, None], ..., cache)` at cache.length == position, up
        to float rounding. memory_mask (B, 1, 1, S) True = attend; cache.length is left alone."""
        max_len = cache.self_k.shape[3]
        key_mask = (torch.arange(max_len, device=tokens.device) <= position).view(1, 1, 1, max_len)
        x = (self.tgt_embed(tokens) * math.sqrt(self.cfg.d_model)
             + self.positions.index_select(0, position.view(1)))[:, None]  # (B, 1, D)
        for i, layer in enumerate(self.decoder_layers):
            x = layer(x, memory_kv=(cache.cross_k[i], cache.cross_v[i]), memory_mask=memory_mask,
                      past=StaticPast(cache.self_k[i], cache.self_v[i], position, key_mask))
        return self.project(self.decoder_norm(x))[:, 0]

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, T, D) -> logits (B, T, V); tied to the embedding when shared."""
        return self.output_proj(hidden)

    def decode(self, tgt, memory, src_pad_mask, cache: DecoderCache | None = None) -> torch.Tensor:
        """tgt (B, T) -> logits (B, T, V); see `decode_hidden`."""
        return self.project(self.decode_hidden(tgt, memory, src_pad_mask, cache))

    def forward(self, src, tgt_in, src_pad_mask, *, return_hidden: bool = False) -> torch.Tensor:
        """Teacher forcing: src (B, S), tgt_in (B, T) = BOS + target[:-1] -> logits (B, T, V).

        return_hidden: the final decoder states (B, T, D) instead, for the training loss, which
        applies the output projection itself (loss.linear_label_smoothed_cross_entropy).
        """
        memory = self.encode(src, src_pad_mask)
        hidden = self.decode_hidden(tgt_in, memory, src_pad_mask)
        return hidden if return_hidden else self.project(hidden)

    def new_cache(self, batch_size: int, max_len: int, memory: torch.Tensor, src_pad_mask: torch.Tensor
                  ) -> DecoderCache:
        """An empty cache for `batch_size` rows of up to `max_len` target positions (BOS included)."""
        assert memory.shape[:2] == src_pad_mask.shape and memory.shape[0] == batch_size
        kv = [layer.cross_attn.memory_kv(memory) for layer in self.decoder_layers]
        cross_k = torch.stack([k for k, _ in kv])  # (L, B, H, S, dh)
        cross_v = torch.stack([v for _, v in kv])  # (L, B, H, S, dh)
        L, _, H, _, dh = cross_k.shape
        self_k = cross_k.new_zeros(L, batch_size, H, max_len, dh)  # (L, B, H, max_len, dh)
        return DecoderCache(self_k=self_k, self_v=torch.zeros_like(self_k), cross_k=cross_k, cross_v=cross_v)
