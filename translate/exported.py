"""Translate with an exported model (translate.export) the way `translate translate` does: the same
normalisation, pieces and source truncation, the same output limit per sentence, beam size and
banned tokens (pad, BOS), and the same choice among finished hypotheses.

The length penalties differ. Ours is GNMT's, score = logprob / ((5 + L) / 6)^α with L counting EOS
(translate.beam.length_penalty); CTranslate2 and Hugging Face `generate` both divide by L^α, and
neither takes another form. So each engine is asked for its K finished hypotheses and their plain
log-probabilities, and we pick the best by GNMT's score:

- CTranslate2 (`translate_batch`): its beam keeps the same live hypotheses as ours (the best K
  non-EOS of the top 2K; EOS candidates within the top K finish). With any α > 0 it stops once
  patience · K hypotheses have finished and only then divides by L^α, so logprob = score · L^α is
  exact (L counts EOS, `return_end_token`; with α = 0 the scores are the log-probabilities). Ours
  stops when no live hypothesis can beat the worst of its K best finished, which can be later than
  after K finish; with patience 2 CTranslate2 searches on until 2K have finished, which made the
  last differing line of the demo agree (docs/EXPORT.md).
- Hugging Face: with length_penalty = 0 and early_stopping = "never" its finished pool keeps the K best
  by log-probability (ours keeps the K best by GNMT score) and stops when no running beam can beat
  them. At α = 0 the two searches are the same algorithm; at α > 0 a hypothesis GNMT prefers can
  have left HF's pool, so a few lines can differ (docs/EXPORT.md).

Each engine takes one output limit per call, so sentences are grouped by their limit
int(max_len_a · src_len + max_len_b) (translate.beam.output_limit). At the limit ours forces EOS;
CTranslate2 instead ends the K best hypotheses as they are, one token longer without EOS (Hugging
Face forces EOS there too, `forced_eos_token_id`).
"""

from __future__ import annotations

from collections import defaultdict

import torch

from translate.beam import length_penalty, output_limit
from translate.evaluate import DecodeOptions, encode_sources
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

CT2_PATIENCE = 2  # CTranslate2 finishes 2K hypotheses before it stops (see the module docstring)


def limit_groups(ids: list[list[int]], *, options: DecodeOptions, max_positions: int) -> dict[int, list[int]]:
    """{output limit: indices of the non-empty sentences with that limit}, src_len counting EOS."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, seq in enumerate(ids):
        if seq:
            limit = output_limit(len(seq) + 1, max_len_a=options.max_len_a, max_len_b=options.max_len_b,
                                 max_output_len=max_positions - 1)
            groups[limit].append(i)
    return dict(sorted(groups.items()))


def gnmt_best(hypotheses: list[tuple[list[int], float]], *, lenpen: float) -> list[int]:
    """The hypothesis (tokens with EOS when it ended, its log-probability) of the best GNMT score."""
    return max(hypotheses, key=lambda h: h[1] / length_penalty(len(h[0]), lenpen))[0]


def translate_ctranslate2(translator, tokenizer: Tokenizer, sentences: list[str], *, options: DecodeOptions,
                          max_positions: int) -> list[str]:
    """Detokenized translations by a `ctranslate2.Translator` of an exported model, in input order."""
    ids = encode_sources(tokenizer, sentences, max_source=max_positions - 1)
    nbests = ctranslate2_nbest(translator, tokenizer, ids, options=options, max_positions=max_positions)
    return [tokenizer.decode([gnmt_best(nbest, lenpen=options.lenpen)])[0] if nbest else "" for nbest in nbests]


def ctranslate2_nbest(translator, tokenizer: Tokenizer, ids: list[list[int]], *, options: DecodeOptions,
                      max_positions: int, forced: bool = False) -> list[list[tuple[list[int], float]]]:
    """For each source (piece ids, without EOS): CTranslate2's finished hypotheses as (ids, EOS
    included when it ended; log-probability), best L^α score first; an empty list for an empty source.

    forced: EOS is never allowed (min = max decoding length), so each sentence generates exactly
    limit + 1 tokens, as many as scripts/bench_decode.py forces ours to (limit tokens, then EOS).
    """
    nbests: list[list[tuple[list[int], float]]] = [[] for _ in ids]
    banned = [[tokenizer.sp.IdToPiece(PAD_ID)], [tokenizer.sp.IdToPiece(BOS_ID)]]
    for limit, group in limit_groups(ids, options=options, max_positions=max_positions).items():
        pieces = [[tokenizer.sp.IdToPiece(t) for t in ids[i]] for i in group]
        results = translator.translate_batch(
            pieces, beam_size=options.beam, patience=CT2_PATIENCE, num_hypotheses=CT2_PATIENCE * options.beam,
            length_penalty=options.lenpen,
            return_scores=True, return_end_token=True, max_decoding_length=limit + 1,
            min_decoding_length=limit + 1 if forced else 0, suppress_sequences=banned,
            max_batch_size=options.batch_tokens, batch_type="tokens")
        for i, result in zip(group, results):
            nbests[i] = [([tokenizer.sp.PieceToId(p) for p in tokens], score * len(tokens) ** options.lenpen)
                         for tokens, score in zip(result.hypotheses, result.scores)]
    return nbests


@torch.no_grad()
def translate_marian(model, hf_tokenizer, sentences: list[str], *, options: DecodeOptions,
                     max_positions: int) -> list[str]:
    """Detokenized translations by an exported MarianMTModel and its MarianTokenizer, in input order,
    one `generate` call per output limit (max_length counts the decoder start token: limit tokens,
    then EOS, forced there as ours is)."""
    from translate import corpus as corpora

    normalized = [corpora.normalize(s) for s in sentences]
    ids = [seq[:max_positions - 1] for seq in hf_tokenizer(normalized, add_special_tokens=False).input_ids]
    outputs = [""] * len(sentences)
    for limit, group in limit_groups(ids, options=options, max_positions=max_positions).items():
        src = torch.full((len(group), max(len(ids[i]) for i in group) + 1), PAD_ID)  # (B, S)
        for row, i in enumerate(group):
            src[row, :len(ids[i]) + 1] = torch.tensor(ids[i] + [EOS_ID])
        generated = model.generate(
            input_ids=src, attention_mask=src != PAD_ID, num_beams=options.beam,
            num_return_sequences=options.beam, length_penalty=0.0, early_stopping="never", do_sample=False,
            max_length=limit + 2, forced_eos_token_id=EOS_ID, bad_words_ids=[[PAD_ID], [BOS_ID]],
            decoder_start_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
            output_scores=True, return_dict_in_generate=True)
        sequences = generated.sequences[:, 1:].tolist()  # without the decoder start token
        scores = generated.sequences_scores.tolist()  # log-probabilities (length_penalty 0)
        for row, i in enumerate(group):
            nbest = [([t for t in seq if t != PAD_ID], score)
                     for seq, score in zip(sequences[row * options.beam:(row + 1) * options.beam],
                                           scores[row * options.beam:(row + 1) * options.beam])]
            best = gnmt_best(nbest, lenpen=options.lenpen)
            outputs[i] = hf_tokenizer.decode(best, skip_special_tokens=True)
    return outputs
