"""Tests for translate.beam: exact hypotheses from a scripted model, invariants on a real one."""

import copy
import math

import pytest
import torch

from translate.beam import Hypothesis, beam_search, greedy_search, length_penalty
from translate.config import ModelConfig
from translate.decoders import StaticDecoder
from translate.model import Transformer

PAD, UNK, BOS, EOS = 0, 1, 2, 3
A, B, C = 4, 5, 6  # the scripted model's vocabulary: 7 tokens
IDS = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD)

# ---------------------------------------------------------------------------------------------
# A scripted model: next-token probabilities looked up by (table, generated prefix).

DEFAULT = {EOS: 0.9, A: 0.04, B: 0.03, C: 0.02, UNK: 0.01}  # for every prefix a table leaves out

# Greedy takes A (0.5) then ends (0.3): 0.15. Beam 2 finds B then EOS: 0.4 · 0.9 = 0.36.
GREEDY_TRAP = {
    (): {A: 0.5, B: 0.4, C: 0.05, EOS: 0.04, UNK: 0.01},
    (A,): {EOS: 0.3, A: 0.26, B: 0.24, C: 0.19, UNK: 0.01},
    (B,): {EOS: 0.9, A: 0.05, B: 0.03, C: 0.01, UNK: 0.01},
}
# The empty output (0.3) finishes at step 0, but A C EOS (0.6 · 0.9 · 0.95 = 0.513) is better.
LATE_FINISH = {
    (): {A: 0.6, EOS: 0.3, B: 0.06, C: 0.03, UNK: 0.01},
    (A,): {C: 0.9, EOS: 0.05, A: 0.025, B: 0.015, UNK: 0.01},
    (A, C): {EOS: 0.95, A: 0.02, B: 0.01, C: 0.01, UNK: 0.01},
}
# [A] has 0.5 · 0.8 = 0.4 (L = 2); [B, B] has 0.45 · 0.9 · 0.9 = 0.3645 (L = 3): α = 1 prefers it.
LENPEN_FLIP = {
    (): {A: 0.5, B: 0.45, EOS: 0.03, C: 0.01, UNK: 0.01},
    (A,): {EOS: 0.8, A: 0.1, B: 0.05, C: 0.04, UNK: 0.01},
    (B,): {B: 0.9, EOS: 0.05, A: 0.02, C: 0.02, UNK: 0.01},
}
# The empty output (0.5) beats [A, A, A] (0.48 · 0.99³) on log-probability but not with α = 1.
LONG_SHOT = {
    (): {EOS: 0.5, A: 0.48, B: 0.01, C: 0.005, UNK: 0.005},
    (A,): {A: 0.99, EOS: 0.005, B: 0.003, C: 0.001, UNK: 0.001},
    (A, A): {A: 0.99, EOS: 0.005, B: 0.003, C: 0.001, UNK: 0.001},
    (A, A, A): {EOS: 0.99, A: 0.005, B: 0.003, C: 0.001, UNK: 0.001},
}
# EOS is never likely after any prefix ("*" replaces DEFAULT): outputs run to max_len.
NEVER_END = {"*": {A: 0.9, EOS: 0.05, B: 0.03, C: 0.01, UNK: 0.01}}
TABLES = [GREEDY_TRAP, LATE_FINISH, LENPEN_FLIP, LONG_SHOT, NEVER_END]


class ScriptedCache:
    def __init__(self, prefixes):
        self.prefixes = prefixes  # (N, t) every token fed so far, BOS first

    def reorder(self, index, *, cross=True):  # no cross-attention state: `cross` changes nothing here
        self.prefixes = self.prefixes[index]


class ScriptedModel:
    """src[:, 0] names a table; memory carries it (so rows must follow their sentence)."""

    def __init__(self):
        self.rows_per_call = []

    def encode(self, src, src_pad_mask):
        return src.to(torch.float64)[:, :, None]  # (B, S, 1)

    def new_cache(self, batch_size, max_len, memory, src_pad_mask):
        assert memory.shape[0] == src_pad_mask.shape[0] == batch_size
        return ScriptedCache(torch.zeros(batch_size, 0, dtype=torch.long))

    def decode(self, tgt, memory, src_pad_mask, cache):
        N = tgt.shape[0]
        assert tgt.shape == (N, 1) and memory.shape[0] == src_pad_mask.shape[0] == cache.prefixes.shape[0] == N
        self.rows_per_call.append(N)
        cache.prefixes = torch.cat([cache.prefixes, tgt], dim=1)
        assert torch.all(cache.prefixes[:, 0] == BOS)
        logits = torch.full((N, 1, 7), float("-inf"), dtype=torch.float64)
        for i in range(N):
            table = TABLES[int(memory[i, 0, 0])]
            probs = table.get(tuple(cache.prefixes[i, 1:].tolist()), table.get("*", DEFAULT))
            assert sum(probs.values()) == pytest.approx(1.0)
            for token, p in probs.items():
                logits[i, 0, token] = math.log(p)
        return logits


def scripted_batch(table_ids, src_lens):
    src = torch.full((len(table_ids), max(src_lens)), PAD)
    for i, (table, n) in enumerate(zip(table_ids, src_lens)):
        src[i, :n] = table
    return src, src == PAD


def hyp(tokens, probability, alpha=0.0):
    """The expected hypothesis with the given product of probabilities."""
    logprob = math.log(probability)
    return Hypothesis(tokens=tokens, score=logprob / length_penalty(len(tokens) + 1, alpha), logprob=logprob)


def assert_hyps(actual, expected):
    assert [h.tokens for h in actual] == [h.tokens for h in expected]
    for a, e in zip(actual, expected):
        assert a.score == pytest.approx(e.score, rel=1e-12)
        assert a.logprob == pytest.approx(e.logprob, rel=1e-12)


def beam(table, *, k, alpha=0.0, nbest=1, src_len=4, max_len_a=0.0, max_len_b=10, model=None):
    src, mask = scripted_batch([table], [src_len])
    return beam_search(model or ScriptedModel(), src, mask, beam_size=k, lenpen=alpha, nbest=nbest,
                       max_len_a=max_len_a, max_len_b=max_len_b, **IDS)[0]


def greedy(table, *, src_len=4, max_len_a=0.0, max_len_b=10):
    src, mask = scripted_batch([table], [src_len])
    return greedy_search(ScriptedModel(), src, mask, max_len_a=max_len_a, max_len_b=max_len_b, **IDS)[0]


# ---------------------------------------------------------------------------------------------
# Exact results


def test_length_penalty_values():
    assert length_penalty(25, 0.6) == pytest.approx(5**0.6) == pytest.approx(2.6265, abs=1e-4)
    assert length_penalty(1, 0.6) == 1.0
    assert length_penalty(7, 0.0) == 1.0
    assert length_penalty(7, 1.0) == 2.0
    torch.testing.assert_close(length_penalty(torch.tensor([1.0, 7.0]), 1.0), torch.tensor([1.0, 2.0]))


def test_greedy_trap():
    assert_hyps(greedy(0), [hyp([A], 0.5 * 0.3)])
    assert_hyps(beam(0, k=1), [hyp([A], 0.5 * 0.3)])
    assert_hyps(beam(0, k=2, nbest=2), [hyp([B], 0.4 * 0.9), hyp([A], 0.5 * 0.3)])
    assert_hyps(beam(0, k=4, nbest=4), [hyp([B], 0.4 * 0.9), hyp([A], 0.5 * 0.3),
                                        hyp([A, A], 0.5 * 0.26 * 0.9), hyp([A, B], 0.5 * 0.24 * 0.9)])


def test_best_hypothesis_finishing_late_is_found():
    best, empty = hyp([A, C], 0.6 * 0.9 * 0.95), hyp([], 0.3)
    assert_hyps(greedy(1), [best])
    assert_hyps(beam(1, k=1), [best])  # EOS ranked 2nd is not finalised by a beam of 1
    assert_hyps(beam(1, k=2, nbest=2), [best, empty])
    assert_hyps(beam(1, k=4, nbest=2), [best, empty])


def test_length_penalty_changes_the_winner():
    short, long = 0.5 * 0.8, 0.45 * 0.9 * 0.9
    assert_hyps(beam(2, k=2, nbest=2), [hyp([A], short), hyp([B, B], long)])
    assert_hyps(beam(2, k=2, alpha=1.0, nbest=2), [hyp([B, B], long, 1.0), hyp([A], short, 1.0)])
    assert_hyps(beam(2, k=4, alpha=1.0), [hyp([B, B], long, 1.0)])
    assert_hyps(beam(2, k=1, alpha=1.0), [hyp([A], short, 1.0)])  # a beam of 1 never sees B B


def test_live_hypotheses_that_can_still_win_keep_the_search_going():
    # With α = 1 the finished empty output (score log 0.5) does not end the search: the live [A]
    # could still reach log(0.48) / lp(max_len + 1) > log 0.5, and [A, A, A] indeed wins.
    assert_hyps(beam(3, k=1), [hyp([], 0.5)])
    assert_hyps(greedy(3), [hyp([], 0.5)])
    assert_hyps(beam(3, k=1, alpha=1.0), [hyp([A, A, A], 0.48 * 0.99**3, 1.0)])
    assert_hyps(beam(3, k=2, alpha=1.0, nbest=2), [hyp([A, A, A], 0.48 * 0.99**3, 1.0), hyp([], 0.5, 1.0)])


def test_max_len_is_respected_and_eos_forced():
    # max_len = int(0.5 · src_len + 1): 3 for 4 source tokens, 4 for 7.
    src, mask = scripted_batch([4, 4], [4, 7])
    model = ScriptedModel()
    out = greedy_search(model, src, mask, max_len_a=0.5, max_len_b=1, **IDS)
    assert_hyps(out[0], [hyp([A] * 3, 0.9**3 * 0.05)])
    assert_hyps(out[1], [hyp([A] * 4, 0.9**4 * 0.05)])
    assert model.rows_per_call == [2, 2, 2, 2, 1]  # the first sentence leaves after its 4th step
    model = ScriptedModel()
    out = beam_search(model, src, mask, beam_size=2, lenpen=2.0, nbest=2, max_len_a=0.5, max_len_b=1, **IDS)
    assert_hyps(out[0][:1], [hyp([A] * 3, 0.9**3 * 0.05, 2.0)])
    assert_hyps(out[1][:1], [hyp([A] * 4, 0.9**4 * 0.05, 2.0)])
    assert all(len(h.tokens) <= 3 for h in out[0]) and all(len(h.tokens) <= 4 for h in out[1])
    assert model.rows_per_call == [4, 4, 4, 4, 2]
    assert_hyps(beam(4, k=3, max_len_b=0), [hyp([], 0.05)])  # max_len 0: only EOS


def test_done_sentences_leave_the_batch():
    src, mask = scripted_batch([0, 4], [4, 4])
    model = ScriptedModel()
    out = beam_search(model, src, mask, beam_size=2, lenpen=0.0, max_len_a=0.0, max_len_b=6, **IDS)
    assert_hyps(out[0], [hyp([B], 0.4 * 0.9)])
    assert model.rows_per_call == [4, 4] + [2] * 5  # GREEDY_TRAP is done after step 1


def test_batch_equals_one_at_a_time_with_scripted_model():
    tables, lens = [0, 1, 2, 3, 4, 2], [3, 6, 2, 5, 4, 7]
    src, mask = scripted_batch(tables, lens)
    for k, alpha in [(1, 0.0), (2, 0.0), (2, 1.0), (4, 0.6)]:
        together = beam_search(ScriptedModel(), src, mask, beam_size=k, lenpen=alpha, nbest=k,
                               max_len_a=0.5, max_len_b=2, **IDS)
        for i, (table, n) in enumerate(zip(tables, lens)):
            alone = beam(table, k=k, alpha=alpha, nbest=k, src_len=n, max_len_a=0.5, max_len_b=2)
            assert_hyps(together[i], alone)


def test_nbest_larger_than_beam_is_an_error():
    with pytest.raises(ValueError, match="nbest"):
        beam(0, k=2, nbest=3)


# ---------------------------------------------------------------------------------------------
# Invariants on a real (random, untrained) Transformer

V = 19


@pytest.fixture(scope="module")
def real_model():
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2, dropout=0.0,
                      max_positions=64)
    model = Transformer(cfg, vocab_size=V, pad_id=PAD).to(torch.float64).eval()
    with torch.no_grad():  # sharper distributions and a likelier EOS: outputs of varied lengths
        model.output_proj.weight.mul_(3.0)
        model.output_proj.weight[EOS].mul_(2.0)
    return model


def real_batch(lengths, *, extra_pad=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths) + extra_pad), PAD)
    for i, n in enumerate(lengths):
        src[i, :n] = torch.randint(4, V, (n,), generator=g)
    return src, src == PAD


LENGTHS = [5, 9, 3, 7, 6, 1, 8]
LIMITS = dict(max_len_a=1.0, max_len_b=3)


def test_beam_one_equals_greedy(real_model):
    src, mask = real_batch(LENGTHS)
    greedy_out = greedy_search(real_model, src, mask, **LIMITS, **IDS)
    beam_out = beam_search(real_model, src, mask, beam_size=1, lenpen=0.0, **LIMITS, **IDS)
    for g, b in zip(greedy_out, beam_out):
        assert_hyps(b, g)


@pytest.mark.parametrize("k, alpha", [(1, 0.0), (4, 0.6), (5, 1.0)])
def test_batch_padding_and_neighbours_do_not_change_a_sentence(real_model, k, alpha):
    src, mask = real_batch(LENGTHS)
    padded_src, padded_mask = real_batch(LENGTHS, extra_pad=5)
    kwargs = dict(beam_size=k, lenpen=alpha, nbest=k, **LIMITS, **IDS)
    together = beam_search(real_model, src, mask, **kwargs)
    padded = beam_search(real_model, padded_src, padded_mask, **kwargs)
    for i, n in enumerate(LENGTHS):
        alone = beam_search(real_model, src[i : i + 1, :n], mask[i : i + 1, :n], **kwargs)[0]
        for other in (together[i], padded[i]):
            assert [h.tokens for h in other] == [h.tokens for h in alone]
            assert [h.score for h in other] == pytest.approx([h.score for h in alone], rel=1e-9)
    lengths = {len(h.tokens) for hyps in together for h in hyps}
    assert len(lengths) > 2, lengths  # the check above saw short and long outputs


@pytest.mark.parametrize("k, alpha", [(1, 0.0), (3, 0.6), (4, 2.0)])
def test_output_never_exceeds_max_len(real_model, k, alpha):
    src, mask = real_batch(LENGTHS, seed=1)
    out = beam_search(real_model, src, mask, beam_size=k, lenpen=alpha, nbest=k, max_len_a=0.5, max_len_b=1, **IDS)
    for hyps, n in zip(out, LENGTHS):
        assert 1 <= len(hyps) <= k
        assert all(len(h.tokens) <= int(0.5 * n + 1) for h in hyps)
        assert all(EOS not in h.tokens and PAD not in h.tokens and BOS not in h.tokens for h in hyps)
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert h.score == pytest.approx(h.logprob / length_penalty(len(h.tokens) + 1, alpha))


# ---------------------------------------------------------------------------------------------
# Static shapes (translate.decoders.StaticDecoder: every row kept, the step a CUDA graph on a GPU)


def test_decode_step_equals_the_cached_decode(real_model):
    src, mask = real_batch(LENGTHS)
    memory = real_model.encode(src, mask)
    cached, static = (real_model.new_cache(len(LENGTHS), 6, memory, mask) for _ in range(2))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for t in range(6):
            tokens = torch.randint(4, V, (len(LENGTHS),), generator=g)
            expected = real_model.decode(tokens[:, None], memory, mask, cached)[:, -1]
            actual = real_model.decode_step(tokens, torch.tensor(t), static, ~mask[:, None, None, :])
            torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_the_static_step_attends_without_sdpa(real_model, monkeypatch):
    """Its one query per row goes through two batched products (model._single_query_attention), not
    SDPA's masked kernel, which computes a tile of queries for it (docs/PERFORMANCE.md)."""
    src, mask = real_batch(LENGTHS)
    cache = real_model.new_cache(len(LENGTHS), 3, real_model.encode(src, mask), mask)

    def refuse(*args, **kwargs):
        raise AssertionError("the static step called scaled_dot_product_attention")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", refuse)
    with torch.no_grad():
        logits = real_model.decode_step(torch.full((len(LENGTHS),), 5), torch.tensor(0), cache, ~mask[:, None, None, :])
    assert logits.isfinite().all()


SHORT = dict(max_len_a=0.5, max_len_b=1)  # most sentences stop at their limit, at different steps


@pytest.mark.parametrize("k, alpha, limits", [(1, 0.0, LIMITS), (4, 0.6, LIMITS), (3, 2.0, LIMITS), (3, 2.0, SHORT)])
def test_static_shapes_give_the_same_hypotheses(real_model, k, alpha, limits):
    src, mask = real_batch(LENGTHS, seed=2)
    kwargs = dict(beam_size=k, lenpen=alpha, nbest=k, **limits, **IDS)
    dynamic = beam_search(real_model, src, mask, **kwargs)
    static = beam_search(real_model, src, mask, static_shapes=True, **kwargs)
    for d, s in zip(dynamic, static):
        assert [h.tokens for h in s] == [h.tokens for h in d]
        assert [h.score for h in s] == pytest.approx([h.score for h in d], rel=1e-9)
    assert len({len(h.tokens) for hyps in dynamic for h in hyps}) > 2  # sentences finished at different steps
    greedy = greedy_search(real_model, src, mask, **limits, **IDS)
    for d, s in zip(greedy, greedy_search(real_model, src, mask, static_shapes=True, **limits, **IDS)):
        assert_hyps(s, d)


def test_a_static_decoder_keeps_its_rows_and_reorders_beams_in_place(real_model):
    src, mask = real_batch([4, 2])
    decoder = StaticDecoder(real_model, real_model.encode(src, mask), mask, 5)
    assert not decoder.drops_rows and decoder.graph is None  # no CUDA graph on the CPU
    buffer = decoder.cache.self_k
    with torch.no_grad():
        decoder(torch.tensor([5, 6]), 0)
        decoder(torch.tensor([7, 8]), 1)
        before = buffer.clone()
        decoder.reorder(torch.tensor([1, 1]), drop=False)
    assert decoder.cache.self_k is buffer  # the same storage: a captured graph keeps reading it
    assert torch.equal(buffer[:, 0, :, :2], before[:, 1, :, :2]) and torch.equal(buffer[:, 1], before[:, 1])
    with pytest.raises(AssertionError):
        decoder.reorder(torch.tensor([0]), drop=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_a_replayed_step_equals_the_same_step_run_directly(real_model):
    """Capture itself: the graph replays exactly what the static step computes (same kernels)."""
    model = copy.deepcopy(real_model).to("cuda", torch.float32)
    src, mask = (t.cuda() for t in real_batch(LENGTHS))
    memory = model.encode(src, mask)
    graphed, direct = StaticDecoder(model, memory, mask, 6), StaticDecoder(model, memory, mask, 6)
    assert graphed.graph is not None
    direct.graph = None
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for t in range(6):
            tokens = torch.randint(4, V, (len(LENGTHS),), generator=g).cuda()
            torch.testing.assert_close(graphed(tokens, t).clone(), direct(tokens, t))
            if t == 2:  # a reorder between steps (the same on both) moves the cache under the graph
                rows = torch.tensor([1, 0, 2, 3, 4, 5, 6], device="cuda")
                graphed.reorder(rows, drop=False)
                direct.reorder(rows, drop=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_steps_equal_the_uncaptured_ones(real_model):
    """The whole search (float32, tiny model: near-ties that rounding could flip are unlikely)."""
    model = copy.deepcopy(real_model).to("cuda", torch.float32)
    src, mask = (t.cuda() for t in real_batch(LENGTHS, seed=2))
    kwargs = dict(beam_size=4, lenpen=0.6, nbest=4, **LIMITS, **IDS)
    graphs = beam_search(model, src, mask, static_shapes=True, **kwargs)
    eager = beam_search(model, src, mask, **kwargs)
    for d, s in zip(eager, graphs):
        assert [h.tokens for h in s] == [h.tokens for h in d]
        assert [h.score for h in s] == pytest.approx([h.score for h in d], rel=1e-4)


@pytest.mark.parametrize("beam", [1, 4])
def test_a_model_without_finite_scores_gives_empty_lines_and_a_warning(small_spm, beam):
    """NaN weights make every hypothesis score NaN, which the searches drop: translate_sentences must
    say so per line and keep going, not fail on an empty n-best list."""
    from conftest import PAIRS
    from translate.evaluate import DecodeOptions, translate_sentences
    from translate.tokenizer import Tokenizer

    tokenizer = Tokenizer(small_spm)
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1, max_positions=64)
    model = Transformer(cfg, vocab_size=tokenizer.vocab_size, pad_id=PAD).eval()
    with torch.no_grad():
        model.output_proj.weight.fill_(float("nan"))
    warnings = []
    sentences = [PAIRS[0][0], "", PAIRS[1][0]]
    outputs = translate_sentences(model, tokenizer, sentences, device=torch.device("cpu"), warn=warnings.append,
                                  options=DecodeOptions(beam=beam, lenpen=0.6, max_len_a=1.0, max_len_b=3))
    assert outputs == ["", "", ""]
    assert sorted(w.split(":")[0] for w in warnings) == ["line 1", "line 3"]  # the empty line is not decoded
