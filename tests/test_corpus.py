"""Corpus readers: plain/compressed files, .sgm, Hugging Face datasets (offline), errors."""

import gzip
import json
import lzma

import pytest

from translate import corpus as corpora
from translate.config import CorpusConfig, Source
from translate.errors import UserError

from conftest import PAIRS, write_corpus, write_lines


def read(corpus, src="en", tgt="de"):
    return list(corpora.read_pairs(corpus, src_lang=src, tgt_lang=tgt))


def test_prefix_pair_and_direction(tmp_path):
    prefix = write_corpus(tmp_path, "train")
    assert read(CorpusConfig(source=Source.FILES, prefix=prefix)) == PAIRS
    assert read(CorpusConfig(source=Source.FILES, prefix=prefix), "de", "en") == [(d, e) for e, d in PAIRS]


@pytest.mark.parametrize("suffix,opener", [(".gz", gzip.open), (".xz", lzma.open)])
def test_compressed_files_found_and_read(tmp_path, suffix, opener):
    for lang, column in (("en", 0), ("de", 1)):
        with opener(tmp_path / f"train.{lang}{suffix}", "wt", encoding="utf-8") as f:
            f.write("".join(p[column] + "\n" for p in PAIRS))
    assert read(CorpusConfig(source=Source.FILES, prefix=str(tmp_path / "train"))) == PAIRS


def test_explicit_paths_and_env_var(tmp_path, monkeypatch):
    write_corpus(tmp_path, "x")
    monkeypatch.setenv("MYDATA", str(tmp_path))
    corpus = CorpusConfig(source=Source.FILES, src_file="$MYDATA/x.en", tgt_file="${MYDATA}/x.de")
    assert read(corpus) == PAIRS
    monkeypatch.delenv("MYDATA")
    with pytest.raises(UserError, match=r"environment variable \$MYDATA, which is not set"):
        read(corpus)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"corpus file not found: .*nope\.en"):
        read(CorpusConfig(source=Source.FILES, prefix=str(tmp_path / "nope")))


def test_misaligned_names_both_files_and_counts(tmp_path):
    write_lines(tmp_path / "t.en", ["a", "b", "c"])
    write_lines(tmp_path / "t.de", ["a", "b"])
    with pytest.raises(UserError) as e:
        read(CorpusConfig(source=Source.FILES, prefix=str(tmp_path / "t")))
    assert "t.en has 3 lines" in str(e.value) and "t.de has 2" in str(e.value)


def test_invalid_utf8_names_file_and_line(tmp_path):
    write_lines(tmp_path / "t.en", ["ok", "fine", "bad"])
    (tmp_path / "t.de").write_bytes(b"gut\nsch\xf6n\nschlecht\n")
    with pytest.raises(UserError, match=r"t\.de, line 2: invalid UTF-8"):
        read(CorpusConfig(source=Source.FILES, prefix=str(tmp_path / "t")))


def test_truncated_xz_is_a_clear_error(tmp_path):
    data = lzma.compress(("hello world\n" * 5000).encode())
    (tmp_path / "t.en.xz").write_bytes(data[: len(data) // 2])
    (tmp_path / "t.de.xz").write_bytes(data)
    with pytest.raises(UserError, match="truncated or corrupt"):
        read(CorpusConfig(source=Source.FILES, prefix=str(tmp_path / "t")))


def test_normalize():
    assert corpora.normalize("\ufeff  a\tb \x00c\r\n") == "a b c"
    assert corpora.normalize("   ") == ""


def test_sgm(tmp_path):
    src = tmp_path / "test.en.sgm"
    src.write_text('<srcset setid="x" srclang="any">\n<doc docid="1">\n<seg id="1">Fish &amp; chips</seg>\n'
                   '<seg id="2"> A &quot;quote&quot; </seg>\n</doc>\n</srcset>\n')
    ref = tmp_path / "test.de.sgm"
    ref.write_text('<refset>\n<doc docid="1">\n<seg id="1">Fisch &amp; Pommes</seg>\n'
                   '<seg id="2">Ein &#132;Zitat&#147;</seg>\n</doc>\n</refset>\n')
    pairs = read(CorpusConfig(source=Source.SGM, src_file=str(src), tgt_file=str(ref)))
    assert pairs[0] == ("Fish & chips", "Fisch & Pommes")
    assert pairs[1][0] == 'A "quote"'


def _hf_rows():
    return [{"translation": {"de": de, "en": en}} for en, de in PAIRS]


def test_huggingface_json_builder_local(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _hf_rows()))
    corpus = CorpusConfig(source=Source.HUGGINGFACE, hf_name="json", hf_config="", hf_split="train",
                          hf_data_files=str(path))
    assert read(corpus) == PAIRS


def test_huggingface_save_to_disk(tmp_path):
    import datasets

    dataset = datasets.DatasetDict({"train": datasets.Dataset.from_list(_hf_rows()),
                                    "validation": datasets.Dataset.from_list(_hf_rows()[:3])})
    dataset.save_to_disk(str(tmp_path / "wmt14_like"))
    corpus = CorpusConfig(source=Source.HUGGINGFACE, hf_name=str(tmp_path / "wmt14_like"), hf_split="validation")
    assert read(corpus) == PAIRS[:3]
    with pytest.raises(UserError, match="has splits"):
        read(CorpusConfig(source=Source.HUGGINGFACE, hf_name=str(tmp_path / "wmt14_like"), hf_split="test"))


def test_huggingface_offline_is_a_clear_message(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'wmt14' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="cannot download wmt14: no network; pass local files with"):
        read(CorpusConfig(source=Source.HUGGINGFACE, hf_name="wmt14", hf_config="de-en"))


def test_max_pairs(tmp_path):
    prefix = write_corpus(tmp_path, "train")
    assert read(CorpusConfig(source=Source.FILES, prefix=prefix, max_pairs=4)) == PAIRS[:4]


def test_synthetic_is_deterministic_and_oriented():
    a = read(CorpusConfig(source=Source.SYNTHETIC, size=50, seed=7))
    assert a == read(CorpusConfig(source=Source.SYNTHETIC, size=50, seed=7))
    assert read(CorpusConfig(source=Source.SYNTHETIC, size=50, seed=7), "de", "en") == [(d, e) for e, d in a]


def test_real_newstest_reads(shared_data):
    corpus = CorpusConfig(source=Source.FILES, prefix=str(shared_data / "newstest" / "newstest2014"))
    pairs = read(corpus)
    assert len(pairs) == 3003
    assert pairs[0] == ("Gutach: Increased safety for pedestrians", "Gutach: Noch mehr Sicherheit für Fußgänger")
