"""prepare: cleaning counts, tokenizer ids, the content-keyed cache; token-budget batching."""

import errno
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from translate.batching import BatchStream, collate, collate_corpus, make_batches, padding_fraction, shard, within_length
from translate.config import config_from_dict
from translate.data import TokenizedCorpus, prepare, target_unigram_entropy
from translate.errors import UserError
from translate.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

from conftest import PAIRS, REPO, tiny_config, write_corpus

sys.path.insert(0, str(REPO / "scripts"))
import bench_collate  # noqa: E402  (the per-sentence reference implementation)


def files_config(tmp_path, pairs=PAIRS, **data):
    prefix = write_corpus(tmp_path / "corpus", "train", pairs)
    valid = write_corpus(tmp_path / "corpus", "valid", PAIRS[:4])
    raw = tiny_config(tmp_path)
    raw["data"].update({"train": {"source": "files", "prefix": prefix},
                        "valid": {"source": "files", "prefix": valid}, "vocab_size": 60, **data})
    return config_from_dict(raw)


def test_cleaning_counts_and_summary(tmp_path):
    noisy = PAIRS + [("", "Leer"), ("   ", "\t"), ("word " * 60, "Wort " * 60),
                     ("a", "Dies ist ein Satz")]
    data = prepare(files_config(tmp_path, noisy, max_tokens_per_sentence=40), verbose=False)
    counts = data.summary["train"]["counts"]
    assert counts == {"read": len(noisy), "empty": 2, "too_long": 1, "bad_ratio": 1, "kept": len(PAIRS)}
    assert len(data.train) == len(PAIRS)
    assert len(data.valid) == 4  # never filtered
    assert data.summary["train"]["src_tokens"] == int(data.train.src_lengths.sum())
    assert 0.0 <= data.summary["padding_fraction"] < 1.0


def test_tokenizer_special_ids_and_round_trip(tmp_path):
    data = prepare(files_config(tmp_path), verbose=False)
    tok = Tokenizer(data.tokenizer_file)
    assert (tok.sp.pad_id(), tok.sp.unk_id(), tok.sp.bos_id(), tok.sp.eos_id()) == (0, 1, 2, 3)
    assert tok.decode(tok.encode(["Das Haus ist klein."])) == ["Das Haus ist klein."]
    first = data.train.src(0)
    assert list(first) == tok.encode([PAIRS[0][0]])[0]


def test_cache_reused_and_rebuilt_only_when_inputs_change(tmp_path, capsys):
    cfg = files_config(tmp_path)
    first = prepare(cfg)
    out = capsys.readouterr().out
    assert "tokenizer: training" in out and "train: tokenizing" in out
    again = prepare(cfg)
    out = capsys.readouterr().out
    assert "reusing" in out and "tokenizing" not in out and "training" not in out
    assert again.tokenizer_file == first.tokenizer_file
    assert np.array_equal(again.train.src_tokens, first.train.src_tokens)
    assert isinstance(again.train.src_tokens, np.memmap)
    # A different cleaning setting re-binarizes but keeps the tokenizer; a vocab change retrains it.
    prepare(replace(cfg, data=replace(cfg.data, max_length_ratio=2.5)))
    out = capsys.readouterr().out
    assert "tokenizer: reusing" in out and "train: tokenizing" in out and "valid: reusing" in out
    prepare(replace(cfg, data=replace(cfg.data, vocab_size=70)))
    assert "tokenizer: training" in capsys.readouterr().out
    # Editing a corpus file invalidates what was built from it.
    (tmp_path / "corpus" / "train.de").write_text((tmp_path / "corpus" / "train.de").read_text() + "")
    __import__("os").utime(tmp_path / "corpus" / "train.de", ns=(1, 1))
    prepare(cfg)
    assert "tokenizer: training" in capsys.readouterr().out


def test_corpus_empty_after_cleaning(tmp_path):
    cfg = files_config(tmp_path, [("", "x"), ("y", "")] * 3)
    with pytest.raises(UserError, match="empty after cleaning: 6 pairs read, 6 empty"):
        prepare(cfg, verbose=False)
    assert not list((tmp_path / "data").glob("tok-*/train-*"))  # nothing half-written


def test_full_disk_while_caching_is_one_error_and_leaves_no_half_cache(tmp_path, monkeypatch):
    cfg = files_config(tmp_path)
    real_save = np.save

    def full_after_two(file, array, **kwargs):  # the third array of a split finds the disk full
        if len(list(Path(file.name).parent.glob("*.npy"))) >= 3:  # (the third's file is open already)
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(file, array, **kwargs)

    monkeypatch.setattr(np, "save", full_after_two)
    with pytest.raises(UserError, match=r"cannot write the data cache .*/train-\w+: No space left on device.*"
                                        r"data\.data_dir"):
        prepare(cfg, verbose=False)
    assert [p.name for p in (tmp_path / "data").glob("tok-*/*")] == ["spm.model"]  # no split, no .tmp
    monkeypatch.setattr(np, "save", real_save)
    assert len(prepare(cfg, verbose=False).train) == len(PAIRS)


def test_cache_files_reach_the_disk_before_the_cache_is_complete(tmp_path, fsynced):
    """Every array and meta.json is fsynced under the temporary name, then the directory after the
    rename: a power loss cannot leave a cache that looks complete but holds empty files."""
    prepare(files_config(tmp_path), verbose=False)
    train_dir = next((tmp_path / "data").glob("tok-*/train-*"))
    files = sorted(p.name for p in train_dir.iterdir())
    written = [Path(p) for p in fsynced if Path(p).parent.name == train_dir.name + ".tmp"]
    assert sorted(p.name for p in written) == files  # each file, while still under the temporary name
    after = fsynced[fsynced.index(str(written[-1])) + 1:]
    assert after[:2] == [f"rename -> {train_dir}", str(train_dir.parent)]  # then the rename, then its directory


def test_target_unigram_entropy_counts_eos_and_is_chunk_independent():
    corpus = TokenizedCorpus(np.zeros(0, np.uint16), np.zeros(3, np.int64),
                             np.array([4, 4, 5], np.uint16), np.array([0, 2, 3], np.int64))
    # Targets scored: 4 4 EOS | 5 EOS  ->  p = (2/5, 1/5, 2/5)
    expected = -(2 * 0.4 * np.log(0.4) + 0.2 * np.log(0.2))
    assert target_unigram_entropy(corpus, vocab_size=8) == pytest.approx(expected, rel=1e-12)
    assert target_unigram_entropy(corpus, vocab_size=8, chunk=2) == pytest.approx(expected, rel=1e-12)


def test_batches_respect_budget_and_cover_everything():
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(1, 60, 5000), rng.integers(1, 60, 5000)
    batches = make_batches(src, tgt, max_tokens=1000, seed=1, epoch=0)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(5000))
    for idx in batches:
        width = max(src[idx].max(), tgt[idx].max()) + 1
        assert len(idx) * width <= 1000
        assert len(idx) < 8 or len(idx) % 8 == 0
    assert padding_fraction(batches, src, tgt) < 0.35


def test_batches_deterministic_by_seed_and_epoch():
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(1, 30, 2000), rng.integers(1, 30, 2000)
    a = make_batches(src, tgt, max_tokens=500, seed=3, epoch=1)
    b = make_batches(src, tgt, max_tokens=500, seed=3, epoch=1)
    c = make_batches(src, tgt, max_tokens=500, seed=3, epoch=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_sentence_longer_than_budget_is_refused():
    with pytest.raises(ValueError, match="exceeds max_tokens"):
        make_batches(np.array([100]), np.array([5]), max_tokens=50, seed=0, epoch=0)


def test_within_length_counts_the_eos_or_bos():
    src, tgt = np.array([9, 10, 3, 12]), np.array([4, 2, 10, 1])
    assert within_length(src, tgt, limit=10).tolist() == [0]  # 9 + EOS fits; 10 + EOS/BOS does not
    assert within_length(src, tgt, limit=13).tolist() == [0, 1, 2, 3]


def test_shards_are_disjoint_and_equal_sized():
    batches = [np.array([i]) for i in range(11)]
    shards = [shard(batches, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    flat = [int(b[0]) for s in shards for b in s]
    assert len(set(flat)) == 9


def test_collate_adds_specials_and_pads():
    batch = collate([np.array([5, 6, 7]), np.array([8])], [np.array([9]), np.array([10, 11])])
    assert batch.src.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.tgt_in.tolist() == [[BOS_ID, 9, PAD_ID], [BOS_ID, 10, 11]]
    assert batch.tgt_out.tolist() == [[9, EOS_ID, PAD_ID], [10, 11, EOS_ID]]
    assert batch.n_tgt_tokens == 5
    # The non-pad targets, located on the host (the loss selects them without a device sync).
    assert batch.target_index.tolist() == [0, 1, 3, 4, 5]  # positions in tgt_out.flatten()
    assert batch.targets.tolist() == [9, EOS_ID, 10, 11, EOS_ID]


def corpus_of(src: list[np.ndarray], tgt: list[np.ndarray]) -> TokenizedCorpus:
    """A TokenizedCorpus over in-memory sentences (flat tokens + offsets, as `prepare` stores them)."""
    def flat(seqs):
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in seqs])]).astype(np.int64)
        return np.concatenate(seqs).astype(np.int32), offsets
    return TokenizedCorpus(*flat(src), *flat(tgt))


@pytest.mark.parametrize("token_dtype", [np.int32, np.uint16])
def test_collate_corpus_equals_the_per_sentence_reference(tmp_path, token_dtype):
    """Against the per-sentence loop it replaced (scripts/bench_collate.py), over memory-mapped token
    arrays of the dtypes `prepare` writes, for single, shuffled, duplicate and all indices."""
    rng = np.random.default_rng(1)
    src = [rng.integers(4, 32000, rng.integers(1, 30)) for _ in range(200)]
    tgt = [rng.integers(4, 32000, rng.integers(1, 30)) for _ in range(200)]
    corpus = corpus_of(src, tgt)
    np.save(tmp_path / "src.npy", corpus.src_tokens.astype(token_dtype))
    np.save(tmp_path / "tgt.npy", corpus.tgt_tokens.astype(token_dtype))
    corpus = TokenizedCorpus(np.load(tmp_path / "src.npy", mmap_mode="r"), corpus.src_offsets,
                             np.load(tmp_path / "tgt.npy", mmap_mode="r"), corpus.tgt_offsets)
    for idx in (np.array([7]), rng.permutation(200)[:37], np.arange(200), [3, 3, 150]):
        got = collate_corpus(corpus, idx)
        want = bench_collate.per_sentence_collate([src[i] for i in idx], [tgt[i] for i in idx])
        for name in ("src", "tgt_in", "tgt_out", "target_index", "targets"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
            assert getattr(got, name).dtype == torch.int64
        assert got.n_tgt_tokens == want.n_tgt_tokens and type(got.n_tgt_tokens) is int
        assert torch.equal(collate([src[i] for i in idx], [tgt[i] for i in idx]).tgt_out, want.tgt_out)


@pytest.mark.parametrize("rank,world_size", [(0, 1), (1, 2)])
def test_batch_stream_prefetching_gives_exactly_the_batches_of_each_epoch(rank, world_size):
    rng = np.random.default_rng(0)
    src = [rng.integers(4, 50, rng.integers(1, 20)) for _ in range(300)]
    tgt = [rng.integers(4, 50, rng.integers(1, 20)) for _ in range(300)]
    corpus = corpus_of(src, tgt)
    stream = BatchStream(corpus, max_tokens=120, seed=3, rank=rank, world_size=world_size)

    def expected(epoch, position):
        batches = shard(make_batches(corpus.src_lengths, corpus.tgt_lengths, max_tokens=120, seed=3, epoch=epoch),
                        rank=rank, world_size=world_size)
        idx = batches[position]
        return collate([src[i] for i in idx], [tgt[i] for i in idx])

    n = stream.count(0)
    # In order across an epoch boundary (the prefetched batch is used), then out of order, as a
    # resumed run asks (the prefetched one is discarded).
    visits = [(0, p) for p in range(n - 2, n)] + [(1, 0), (1, 1), (0, 3), (2, 5), (2, 6)]
    try:
        for epoch, position in visits:
            got, want = stream.get(epoch, position), expected(epoch, position)
            for name in ("src", "tgt_in", "tgt_out", "target_index", "targets"):
                assert torch.equal(getattr(got, name), getattr(want, name)), (epoch, position, name)
            assert got.n_tgt_tokens == want.n_tgt_tokens
    finally:
        stream.close()
