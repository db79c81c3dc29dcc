"""Batched beam search and greedy decoding over an encoder-decoder with an incremental cache.

`model` needs only `encode(src, src_pad_mask)`, `new_cache(batch_size, max_len, memory,
src_pad_mask)` and `decode(tgt, memory, src_pad_mask, cache)` (translate.model.Transformer, or the
scripted fake in the tests); with `static_shapes`, also `decode_step` (translate.decoders). The state
of beam search is a set of (B, K, ...) tensors; each step makes one decoder call for all live rows:

    1. score all one-token extensions: scores (B, K, 1) + log p(v | prefix) (B, K, V);
    2. flatten to (B, K·V) and take the top 2K; beam = index // V, token = index % V;
    3. EOS candidates ranked within the top K move to the finished set (B, K), kept sorted by
       score = logprob / length_penalty(L); the best K non-EOS candidates stay live, so finished
       hypotheses never starve the beam (fairseq's scheme);
    4. a sentence is done at its max length, or when its finished set is full and no live
       hypothesis can still beat the worst finished one; done sentences leave the batch (with
       static shapes they stay, marked done, and nothing they decode is kept).

Each sentence decodes exactly as it would alone: its rows never mix with other sentences', and
source padding is masked. The output never exceeds max_len = int(max_len_a · src_len + max_len_b)
tokens (EOS excluded): at step max_len only EOS may be chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from translate.decoders import CachedDecoder, StaticDecoder

NEG_INF = float("-inf")


@dataclass
class Hypothesis:
    tokens: list[int]  # generated tokens, without BOS and EOS
    score: float  # logprob / length_penalty(len(tokens) + 1, lenpen)
    logprob: float  # Σ log p of the generated tokens, EOS included


def length_penalty(length, alpha: float):
    """GNMT length penalty lp(L) = ((5 + L) / 6)^α (Wu et al. 2016; Vaswani et al. via tensor2tensor).

    L counts the generated tokens including EOS (a float or a tensor). Hypotheses are ranked by
    logprob / lp(L): α = 0 gives lp = 1 (plain log-probability, which favours short outputs);
    larger α favours longer ones. Not fairseq's L^α: at L = 25, α = 0.6, lp = 2.63 vs 6.90.
    """
    return ((5.0 + length) / 6.0) ** alpha


def output_limit(src_len: int, *, max_len_a: float, max_len_b: float, max_output_len: int | None = None) -> int:
    """The output limit int(a · src_len + b) of one sentence (src_len counting its EOS), capped at
    `max_output_len` (the model's position table: BOS + max_len tokens must fit)."""
    limit = int(max_len_a * src_len + max_len_b)  # Python floats: exact int() as documented
    return limit if max_output_len is None else min(limit, max_output_len)


def max_lengths(src_pad_mask: torch.Tensor, *, max_len_a: float, max_len_b: float,
                max_output_len: int | None = None) -> torch.Tensor:
    """Per-sentence `output_limit` (B,), src_len counting non-pad tokens."""
    limits = [output_limit(n, max_len_a=max_len_a, max_len_b=max_len_b, max_output_len=max_output_len)
              for n in (~src_pad_mask).sum(dim=1).tolist()]
    return torch.tensor(limits, dtype=torch.long, device=src_pad_mask.device)


def _next_logprobs(logits, *, bos_id, pad_id):
    """log p(v | prefix) (N, V), in float32 at least, from the next-token logits (N, V); pad and BOS
    are never produced. (Rows at their length limit may only produce EOS: the searches apply that
    to their few candidates, `_only_eos_at_limit`, rather than with another pass over (N, V).)"""
    lprobs = F.log_softmax(logits, dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32))  # (N, V)
    lprobs[:, pad_id] = NEG_INF  # two scalar fills: a list index would be a host-to-device copy per step
    lprobs[:, bos_id] = NEG_INF
    return lprobs


def _only_eos_at_limit(top_scores, top_index, eos_scores, at_limit, *, eos_id: int, vocab_size: int):
    """The top 2K candidates (A, 2K) of each sentence, except that a sentence `at_limit` (A,) may only
    end: its candidates become the EOS extensions of its K beams, `eos_scores` (A, K), best first, then
    K impossible (−inf) ones. The same top 2K as setting every other token's log-probability to −inf
    before the top-k, without two more passes over the (A·K, V) log-probabilities every step."""
    ended, beam = eos_scores.sort(dim=1, descending=True)  # (A, K)
    limit_scores = torch.cat([ended, torch.full_like(ended, NEG_INF)], dim=1)  # (A, 2K)
    limit_index = torch.cat([beam * vocab_size + eos_id, torch.zeros_like(beam)], dim=1)  # −inf half: any index
    return (torch.where(at_limit[:, None], limit_scores, top_scores),
            torch.where(at_limit[:, None], limit_index, top_index))


@torch.no_grad()
def beam_search(model, src, src_pad_mask, *, beam_size, lenpen, max_len_a, max_len_b, bos_id, eos_id, pad_id,
                nbest=1, max_output_len: int | None = None, static_shapes: bool = False) -> list[list[Hypothesis]]:
    """Beam search for each sentence of src (B, S); returns up to `nbest` hypotheses each, best first.

    lenpen is the α ≥ 0 of `length_penalty`. static_shapes: decode with a StaticDecoder (a CUDA
    graph per batch on a GPU); the same hypotheses up to float rounding.
    """
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest ({nbest}) must be between 1 and beam_size ({beam_size})")
    B, K, device = src.shape[0], beam_size, src.device
    max_len = max_lengths(src_pad_mask, max_len_a=max_len_a, max_len_b=max_len_b,
                          max_output_len=max_output_len)  # (B,)
    n_steps = int(max_len.max()) + 1  # tokens generated, EOS included
    memory = model.encode(src, src_pad_mask).repeat_interleave(K, dim=0)  # (B·K, S, D) row b·K + k
    decoder = (StaticDecoder if static_shapes else CachedDecoder)(
        model, memory, src_pad_mask.repeat_interleave(K, dim=0), n_steps)
    dtype = torch.promote_types(memory.dtype, torch.float32)
    # A live hypothesis's score can only fall and its penalty only grow up to lp(max_len + 1).
    best_possible_lp = length_penalty(max_len.to(dtype) + 1, lenpen)  # (B,)

    active = torch.arange(B, device=device)  # (A,) original index of each sentence in the batch
    searching = torch.ones(B, dtype=torch.bool, device=device)  # (A,) False: done, kept for static shapes
    scores = torch.full((B, K), NEG_INF, dtype=dtype, device=device)  # (A, K) Σ log p of live hypotheses
    scores[:, 0] = 0.0  # only beam 0 is live at the start, so the K beams don't duplicate it
    seqs = torch.zeros(B, K, n_steps, dtype=torch.long, device=device)  # (A, K, n_steps) live tokens
    last = torch.full((B * K,), bos_id, dtype=torch.long, device=device)  # (A·K,)
    fin_score = torch.full((B, K), NEG_INF, dtype=dtype, device=device)  # (B, K) sorted, best first
    fin_logprob = torch.zeros(B, K, dtype=dtype, device=device)
    fin_len = torch.zeros(B, K, dtype=torch.long, device=device)
    fin_seqs = torch.zeros(B, K, n_steps, dtype=torch.long, device=device)

    for t in range(n_steps):  # t tokens generated so far
        A = active.numel()
        # 1. Score every one-token extension of every live hypothesis.
        lprobs = _next_logprobs(decoder(last, t), bos_id=bos_id, pad_id=pad_id)  # (A·K, V)
        V = lprobs.shape[-1]
        candidates = scores[:, :, None] + lprobs.view(A, K, V)  # (A, K, V)
        # 2. Top 2K of the flattened (A, K·V): at most K end in EOS, so K non-EOS always remain.
        #    A sentence at its length limit may only end.
        top_scores, top_index = candidates.view(A, K * V).topk(2 * K, dim=1)  # (A, 2K)
        top_scores, top_index = _only_eos_at_limit(top_scores, top_index, candidates[:, :, eos_id],
                                                   max_len[active] == t, eos_id=eos_id, vocab_size=V)
        beam, token = top_index // V, top_index % V  # (A, 2K)
        prefix = seqs.gather(1, beam[:, :, None].expand(-1, -1, n_steps))  # (A, 2K, n_steps)

        # 3a. EOS candidates among the top K join the finished set, which keeps the best K. (One
        #     ranked below K would not have been in a K-beam; admitting it, beam 1 would not be greedy.)
        ends = (token[:, :K] == eos_id) & searching[:, None]  # (A, K)
        new_score = torch.where(ends, top_scores[:, :K] / length_penalty(t + 1, lenpen), NEG_INF)  # (A, K)
        fin_best, pick = torch.cat([fin_score[active], new_score], dim=1).topk(K, dim=1)  # (A, K)
        fin_score[active] = fin_best
        fin_logprob[active] = torch.cat([fin_logprob[active], top_scores[:, :K]], dim=1).gather(1, pick)
        fin_len[active] = torch.cat([fin_len[active], torch.full_like(pick, t)], dim=1).gather(1, pick)
        both_seqs = torch.cat([fin_seqs[active], prefix[:, :K]], dim=1)  # (A, 2K, n_steps)
        fin_seqs[active] = both_seqs.gather(1, pick[:, :, None].expand(-1, -1, n_steps))

        # 3b. The best K non-EOS candidates stay live.
        scores, live = torch.where(token == eos_id, NEG_INF, top_scores).topk(K, dim=1)  # (A, K)
        beam = beam.gather(1, live)  # (A, K) the beam each live hypothesis extends
        seqs = prefix.gather(1, live[:, :, None].expand(-1, -1, n_steps))  # (A, K, n_steps)
        seqs[:, :, t] = token.gather(1, live)

        # 4. Done: at max length, or the best live score bound (scores sorted, so column 0) cannot
        #    beat the worst finished one (−inf until K have finished). For logprob ≤ 0 and α ≥ 0 the
        #    bound logprob / lp(max_len + 1) is the largest score any continuation can reach.
        can_improve = scores[:, 0] / best_possible_lp[active] > fin_score[active, K - 1]  # (A,)
        keep = can_improve & (max_len[active] > t) & searching  # (A,)
        n_keep = int(keep.sum())  # the step's one host sync
        if n_keep == 0:
            break
        # 5. Follow the surviving beams in the cache; drop the rows of done sentences (or, with
        #    static shapes, mark them done).
        rows = torch.arange(A, device=device)[:, None] * K + beam  # (A, K)
        drop = n_keep < A and decoder.drops_rows
        if drop:
            rows, active, scores, seqs, keep = rows[keep], active[keep], scores[keep], seqs[keep], keep[keep]
        searching = keep
        decoder.reorder(rows.view(-1), drop=drop)  # (A'·K,)
        last = seqs[:, :, t].reshape(-1)  # (A'·K,)

    return _collect(fin_seqs, fin_len, fin_score, fin_logprob, nbest=nbest)


def _collect(seqs, lengths, score, logprob, *, nbest):
    """Hypothesis lists from the (B, K, ...) finished tensors, skipping empty (−inf) slots."""
    seqs, lengths, score, logprob = seqs.tolist(), lengths.tolist(), score.tolist(), logprob.tolist()
    return [
        [Hypothesis(tokens=seqs[b][k][: lengths[b][k]], score=score[b][k], logprob=logprob[b][k])
         for k in range(nbest) if score[b][k] > NEG_INF]
        for b in range(len(seqs))
    ]


@torch.no_grad()
def greedy_search(model, src, src_pad_mask, *, max_len_a, max_len_b, bos_id, eos_id, pad_id,
                  max_output_len: int | None = None, static_shapes: bool = False) -> list[list[Hypothesis]]:
    """Pick the most probable token at each step; the same result as beam_search(beam_size=1, lenpen=0)."""
    B, device = src.shape[0], src.device
    max_len = max_lengths(src_pad_mask, max_len_a=max_len_a, max_len_b=max_len_b,
                          max_output_len=max_output_len)  # (B,)
    n_steps = int(max_len.max()) + 1
    memory = model.encode(src, src_pad_mask)  # (B, S, D)
    decoder = (StaticDecoder if static_shapes else CachedDecoder)(model, memory, src_pad_mask, n_steps)
    dtype = torch.promote_types(memory.dtype, torch.float32)

    active = torch.arange(B, device=device)  # (A,)
    searching = torch.ones(B, dtype=torch.bool, device=device)  # (A,) False: done, kept for static shapes
    logprob = torch.zeros(B, dtype=dtype, device=device)  # (A,)
    seqs = torch.zeros(B, n_steps, dtype=torch.long, device=device)  # (A, n_steps)
    last = torch.full((B,), bos_id, dtype=torch.long, device=device)  # (A,)
    out_seqs, out_len = torch.zeros_like(seqs), torch.zeros(B, dtype=torch.long, device=device)
    out_logprob = torch.zeros(B, dtype=dtype, device=device)

    for t in range(n_steps):
        lprobs = _next_logprobs(decoder(last, t), bos_id=bos_id, pad_id=pad_id)  # (A, V)
        best, last = lprobs.max(dim=-1)  # (A,)
        at_limit = max_len[active] == t  # (A,) may only end
        best, last = torch.where(at_limit, lprobs[:, eos_id], best), torch.where(at_limit, eos_id, last)
        logprob = logprob + best
        seqs[:, t] = last
        ended = (last == eos_id) & searching  # (A,) at max length EOS is forced, so this covers the limit too
        done = active[ended]
        out_seqs[done], out_len[done], out_logprob[done] = seqs[ended], t, logprob[ended]
        keep = searching & ~ended
        n_keep = int(keep.sum())  # the step's one host sync
        if n_keep == 0:
            break
        if n_keep < keep.numel() and decoder.drops_rows:
            active, logprob, seqs, last = active[keep], logprob[keep], seqs[keep], last[keep]
            decoder.reorder(keep.nonzero().squeeze(1), drop=True)
            keep = keep[keep]
        searching = keep

    scores = out_logprob[:, None]  # (B, 1) α = 0: score = logprob
    return _collect(out_seqs[:, None], out_len[:, None], scores, scores, nbest=1)
