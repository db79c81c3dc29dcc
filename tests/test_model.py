"""Tests for translate.model: shapes, cached = uncached decoding, padding invariance, tying, learning."""

import dataclasses

import pytest
import torch

from translate.config import ModelConfig
from translate.beam import greedy_search
from translate.model import Transformer, _attention, _single_query_attention, as_words, sinusoidal_positions

PAD, UNK, BOS, EOS = 0, 1, 2, 3
V = 23


def tiny_config(**overrides) -> ModelConfig:
    base = ModelConfig(d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2,
                       dropout=0.0, max_positions=64)
    return dataclasses.replace(base, **overrides)


def tiny_model(seed=0, dtype=torch.float64, **overrides) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(tiny_config(**overrides), vocab_size=V, pad_id=PAD).to(dtype).eval()


def random_batch(lengths, *, seed=0, extra_pad=0):
    """src (B, S) of random real tokens with the given lengths, right-padded, and its pad mask."""
    g = torch.Generator().manual_seed(seed)
    S = max(lengths) + extra_pad
    src = torch.full((len(lengths), S), PAD)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(4, V, (n,), generator=g)
    return src, src == PAD


def test_sinusoidal_positions_match_the_paper():
    table = sinusoidal_positions(50, 16)
    pos, i = 7, 3
    angle = torch.tensor(pos / 10000 ** (2 * i / 16), dtype=torch.float64)
    assert table[pos, 2 * i].item() == pytest.approx(angle.sin().item(), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(angle.cos().item(), abs=1e-6)
    assert sinusoidal_positions(5, 7).shape == (5, 7)  # odd widths work too


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("share", [False, True])
def test_shapes_and_finite(norm_first, share):
    model = tiny_model(norm_first=norm_first, share_embeddings=share, dtype=torch.float32)
    src, mask = random_batch([5, 3, 7])
    tgt = torch.randint(4, V, (3, 6))
    memory = model.encode(src, mask)
    assert memory.shape == (3, 7, 32)
    assert model.decode_hidden(tgt, memory, mask).shape == (3, 6, 32)
    logits = model(src, tgt, mask)
    assert logits.shape == (3, 6, V)
    assert torch.isfinite(logits).all()
    dropout = tiny_model(norm_first=norm_first, share_embeddings=share, dtype=torch.float32, dropout=0.1,
                         attention_dropout=0.1, activation_dropout=0.1).train()
    assert not torch.equal(dropout(src, tgt, mask), dropout(src, tgt, mask))  # dropout is live in training


def test_pre_and_post_norm_differ_in_structure():
    post, pre = tiny_model(norm_first=False), tiny_model(norm_first=True)
    assert isinstance(post.encoder_norm, torch.nn.Identity)
    assert isinstance(pre.encoder_norm, torch.nn.LayerNorm) and isinstance(pre.decoder_norm, torch.nn.LayerNorm)
    assert pre.count_parameters() == post.count_parameters() + 4 * 32


def test_tied_embeddings_are_one_tensor():
    model = tiny_model(share_embeddings=True)
    assert model.src_embed.weight is model.tgt_embed.weight is model.output_proj.weight
    untied = tiny_model(share_embeddings=False)
    assert untied.count_parameters() == model.count_parameters() + 2 * V * 32
    # A gradient step through the output projection moves the embedding rows as well.
    src, mask = random_batch([4, 4])
    model.train()
    model(src, src, mask).sum().backward()
    assert model.src_embed.weight.grad is model.output_proj.weight.grad


def test_initialisation():
    model = tiny_model(dtype=torch.float32, d_model=64, d_ff=128)
    emb = model.src_embed.weight
    assert torch.all(emb[PAD] == 0)
    assert emb[1:].std().item() == pytest.approx(64**-0.5, rel=0.1)
    qkv = model.encoder_layers[0].self_attn.qkv
    bound = (6 / (64 + 64)) ** 0.5  # per D×D block, not (6 / (64 + 192)) ** 0.5
    assert qkv.weight.abs().max().item() <= bound
    assert qkv.weight.abs().max().item() > 0.9 * bound
    assert torch.all(qkv.bias == 0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_cached_decoding_equals_uncached(norm_first):
    model = tiny_model(norm_first=norm_first)
    src, mask = random_batch([6, 3, 5], seed=1)
    tgt = torch.cat([torch.full((3, 1), BOS), torch.randint(4, V, (3, 7))], dim=1)  # (3, 8)
    with torch.no_grad():
        memory = model.encode(src, mask)
        full = model.decode(tgt, memory, mask)  # (3, 8, V)
        cache = model.new_cache(3, 10, memory, mask)
        steps = [model.decode(tgt[:, t : t + 1], memory, mask, cache) for t in range(8)]
    assert cache.length == 8
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-10)


def test_cached_decoding_several_tokens_at_a_time():
    model = tiny_model()
    src, mask = random_batch([6, 4], seed=2)
    tgt = torch.cat([torch.full((2, 1), BOS), torch.randint(4, V, (2, 6))], dim=1)  # (2, 7)
    with torch.no_grad():
        memory = model.encode(src, mask)
        full = model.decode(tgt, memory, mask)
        cache = model.new_cache(2, 7, memory, mask)
        parts = [model.decode(tgt[:, :3], memory, mask, cache), model.decode(tgt[:, 3:4], memory, mask, cache),
                 model.decode(tgt[:, 4:], memory, mask, cache)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=0, atol=1e-10)


def test_cache_reorder_selects_rows():
    model = tiny_model()
    src, mask = random_batch([6, 3, 5, 4], seed=3)
    tgt = torch.cat([torch.full((4, 1), BOS), torch.randint(4, V, (4, 5))], dim=1)  # (4, 6)
    index = torch.tensor([2, 0, 2])  # fewer rows than the batch, one repeated
    with torch.no_grad():
        memory = model.encode(src, mask)
        cache = model.new_cache(4, 6, memory, mask)
        for t in range(3):
            model.decode(tgt[:, t : t + 1], memory, mask, cache)
        cache.reorder(index)
        memory, mask, tgt = memory[index], mask[index], tgt[index]
        steps = [model.decode(tgt[:, t : t + 1], memory, mask, cache) for t in range(3, 6)]
        full = model.decode(tgt, memory, mask)
    torch.testing.assert_close(torch.cat(steps, dim=1), full[:, 3:], rtol=0, atol=1e-10)


def test_a_beam_reorder_may_leave_the_cross_attention_state():
    """Rows that move within their sentence (beams sharing one memory) need no cross-attention copy:
    the next steps are the same with cross=False; moving rows across sentences is not."""
    model = tiny_model()
    src, mask = random_batch([6, 3], seed=4)
    K = 3
    memory = model.encode(src, mask).repeat_interleave(K, dim=0)  # (B·K, S, D) row b·K + k
    mask = mask.repeat_interleave(K, dim=0)
    tgt = torch.cat([torch.full((6, 1), BOS), torch.randint(4, V, (6, 4))], dim=1)  # (B·K, 5)
    within = torch.tensor([2, 2, 0, 4, 3, 3])  # each row takes a beam of its own sentence
    across = torch.tensor([3, 4, 5, 0, 1, 2])  # the two sentences swap places

    def next_steps(index, cross):
        with torch.no_grad():
            cache = model.new_cache(6, 5, memory, mask)
            for t in range(2):
                model.decode(tgt[:, t : t + 1], memory, mask, cache)
            cache.reorder(index, cross=cross)
            return torch.cat([model.decode(tgt[index, t : t + 1], memory[index], mask[index], cache)
                              for t in range(2, 5)], dim=1)

    torch.testing.assert_close(next_steps(within, cross=False), next_steps(within, cross=True), rtol=0, atol=0)
    assert not torch.allclose(next_steps(across, cross=False), next_steps(across, cross=True))


@pytest.mark.parametrize("norm_first", [False, True])
def test_source_padding_changes_nothing(norm_first):
    model = tiny_model(norm_first=norm_first)
    lengths = [5, 2, 7]
    src, mask = random_batch(lengths, seed=4)
    src_padded, mask_padded = random_batch(lengths, seed=4, extra_pad=6)
    tgt = torch.randint(4, V, (3, 5))
    with torch.no_grad():
        memory, memory_padded = model.encode(src, mask), model.encode(src_padded, mask_padded)
        for i, n in enumerate(lengths):
            torch.testing.assert_close(memory_padded[i, :n], memory[i, :n], rtol=0, atol=1e-10)
        torch.testing.assert_close(model.decode(tgt, memory_padded, mask_padded), model.decode(tgt, memory, mask),
                                   rtol=0, atol=1e-10)
        # Each sentence alone, with no padding at all, gives the same as in the batch.
        for i, n in enumerate(lengths):
            alone = model(src[i : i + 1, :n], tgt[i : i + 1], mask[i : i + 1, :n])
            torch.testing.assert_close(alone[0], model(src, tgt, mask)[i], rtol=0, atol=1e-10)


def test_max_positions_is_enforced():
    model = tiny_model(max_positions=8)
    src, mask = random_batch([9])
    with pytest.raises(ValueError, match="max_positions"):
        model.encode(src, mask)


@pytest.mark.parametrize("norm_first", [False, True])
def test_memorises_a_small_copy_reverse_task(norm_first):
    """20 random pairs (target = reversed source) are learnt within 150 Adam steps; greedy decoding
    then reproduces every target."""
    torch.manual_seed(0)
    n, vocab = 20, 12
    lengths = torch.randint(3, 7, (n,))
    src = torch.full((n, 6), PAD)
    tgt_out = torch.full((n, 7), PAD)  # reversed source + EOS
    for i, L in enumerate(lengths.tolist()):
        tokens = torch.randint(4, vocab, (L,))
        src[i, :L] = tokens
        tgt_out[i, :L] = tokens.flip(0)
        tgt_out[i, L] = EOS
    tgt_in = torch.cat([torch.full((n, 1), BOS), tgt_out[:, :-1]], dim=1)
    tgt_in[tgt_in == EOS] = PAD
    mask = src == PAD
    cfg = tiny_config(norm_first=norm_first)
    model = Transformer(cfg, vocab_size=vocab, pad_id=PAD).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98))
    keep = tgt_out != PAD
    for step in range(150):
        logits = model(src, tgt_in, mask)
        loss = torch.nn.functional.cross_entropy(logits[keep], tgt_out[keep])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 0:
            first = loss.item()
    assert first > 2.0
    assert loss.item() < 0.02
    hyps = greedy_search(model.eval(), src, mask, max_len_a=1.0, max_len_b=2, bos_id=BOS, eos_id=EOS, pad_id=PAD)
    for i, L in enumerate(lengths.tolist()):
        assert hyps[i][0].tokens == src[i, :L].flip(0).tolist()


@pytest.mark.parametrize("share", [True, False])
def test_hf_init_is_normal_002_with_zero_biases_and_pad_rows(share):
    from translate.config import Init

    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config(share_embeddings=share, d_model=64, d_ff=256), init=Init.HF)
    model = Transformer(cfg, vocab_size=500, pad_id=PAD)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)
    assert all(torch.all(m.bias == 0) for m in linears if m.bias is not None)
    for embedding in (model.src_embed, model.tgt_embed):
        assert torch.all(embedding.weight[PAD] == 0)
        assert embedding.weight[1:].std().item() == pytest.approx(0.02, rel=0.05)
    # The default (fairseq) draws the embeddings with std d_model^-0.5 = 0.125, not 0.02.
    torch.manual_seed(0)
    default = Transformer(tiny_config(share_embeddings=share, d_model=64, d_ff=256), vocab_size=500, pad_id=PAD)
    assert default.src_embed.weight[1:].std().item() == pytest.approx(64 ** -0.5, rel=0.05)


def test_compiled_layers_serve_every_batch_shape_and_leave_the_model_unchanged():
    """train.compile (runtime.compile_layers): each layer of the uncached path compiled in place.
    Same outputs and gradients as the eager model, the same state_dict, one graph per layer class for
    every batch shape (a first batch with S == T must not tie S to T: Dynamo's duck sizing), and the
    cached decoding steps left eager (their shapes change at every step)."""
    import torch._dynamo
    import torch.fx.experimental._config as fx_config
    from torch._dynamo.utils import counters
    from translate.runtime import compile_layers

    duck_shape = fx_config.use_duck_shape  # restored below: compile_layers turns it off process-wide
    torch._dynamo.reset()
    counters.clear()
    eager, compiled = tiny_model(dtype=torch.float32), tiny_model(dtype=torch.float32)
    keys = list(compiled.state_dict())
    # aot_eager: Dynamo's own guards (duck sizing among them) without Inductor's, which add more on the GPU
    compile_layers(compiled, backend="aot_eager")
    assert list(compiled.state_dict()) == keys
    # (B, S, T): S == T first, then S != T. (Size 1 is always specialised: a one-sentence batch
    # compiles once more, which is left as it is.)
    shapes = [(3, 7, 7), (2, 5, 9), (4, 11, 6), (5, 4, 4)]
    try:
        for i, (B, S, T) in enumerate(shapes):
            gen = torch.Generator().manual_seed(i)
            src, tgt = (torch.randint(4, V, (B, n), generator=gen) for n in (S, T))
            out, reference = compiled(src, tgt, src == 0), eager(src, tgt, src == 0)
            torch.testing.assert_close(out, reference)
            out.square().sum().backward()
            reference.square().sum().backward()
        # one encoder layer graph and one decoder layer graph, shared by the layers of each, for all shapes
        assert counters["stats"]["unique_graphs"] == 2
        for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled.parameters()):
            torch.testing.assert_close(p_compiled.grad, p_eager.grad, msg=name)
        src, mask = random_batch([5, 3])
        hyps = [greedy_search(m, src, mask, max_len_a=1.0, max_len_b=4, bos_id=BOS, eos_id=EOS, pad_id=PAD)
                for m in (compiled, eager)]
        assert hyps[0] == hyps[1]
        assert counters["stats"]["unique_graphs"] == 3  # the encoder layer again, without gradients
    finally:
        torch._dynamo.reset()
        fx_config.use_duck_shape = duck_shape




@pytest.mark.parametrize("dtype, head_dim", [(torch.bfloat16, 64), (torch.float32, 64), (torch.float16, 4)])
def test_a_reorder_through_words_moves_the_same_bytes(dtype, head_dim):
    g = torch.Generator().manual_seed(0)
    buffer = torch.randn(2, 5, 3, 7, head_dim, generator=g).to(dtype)  # (L, N, H, max_len, dh)
    words, = as_words(buffer)
    assert words.dtype == torch.int64 and words.shape[-1] == head_dim * buffer.element_size() // 8
    rows = torch.tensor([4, 4, 0, 2, 1])
    out = torch.empty_like(buffer)
    out_words, buffer_words = as_words(out, buffer)
    out_words[:, :, :, :6] = buffer_words[:, rows, :, :6]
    assert torch.equal(out[:, :, :, :6], buffer[:, rows, :, :6])


def test_buffers_not_in_whole_words_are_left_as_they_are():
    odd = torch.zeros(2, 3, 5)  # float32, 5 values: 20 bytes a row
    shifted = torch.zeros(2, 3, 9, dtype=torch.bfloat16)[..., 1:5]  # 4 values, but starting mid-word
    aligned = torch.zeros(2, 3, 4, dtype=torch.bfloat16)
    for buffers in ((odd,), (shifted,), (aligned, odd)):  # all of them as words, or none
        assert all(a is b for a, b in zip(as_words(*buffers), buffers))
    assert as_words(aligned)[0].dtype == torch.int64


def test_single_query_attention_is_the_model_attention_and_finite_when_all_keys_are_masked():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 2, n, 8, generator=g, dtype=torch.float64) for n in (1, 6, 6))
    mask = torch.arange(6)[None, None, None, :] < torch.tensor([6, 2, 1])[:, None, None, None]
    torch.testing.assert_close(_single_query_attention(q, k, v, mask=mask), _attention(q, k, v, mask=mask))
    none = torch.zeros(3, 1, 1, 6, dtype=torch.bool)
    assert _single_query_attention(q, k, v, mask=none).isfinite().all()
