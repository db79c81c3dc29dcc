"""The command line: help, and the bad-input contract (one message, exit code 2, nothing written)."""

import subprocess
import sys

import pytest
import yaml

from translate.cli import main

from conftest import PAIRS, REPO, tiny_config, write_config, write_corpus, write_lines


def files_config(tmp_path, prefix):
    raw = tiny_config(tmp_path)
    raw["data"].update(train={"source": "files", "prefix": prefix}, valid={"source": "none"},
                       test={"source": "none"}, vocab_size=60)
    raw["eval"]["dev_bleu_sentences"] = 0
    return write_config(tmp_path / "c.yaml", raw)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("prepare", "train", "eval", "translate", "average"):
        assert command in out
    for command in ("prepare", "train", "eval", "translate", "average"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "usage: translate " + command in capsys.readouterr().out


def test_prepare_prints_config_and_summary(tmp_path, capsys):
    prefix = write_corpus(tmp_path, "train")
    code, out, err = run_cli(capsys, "prepare", "--config", files_config(tmp_path, prefix))
    assert code == 0, err
    assert "vocab_size: 60" in out  # the resolved config
    assert f"pairs read {len(PAIRS)}, kept {len(PAIRS)}" in out
    assert "padding" in out


def assert_user_error(capsys, argv, fragment, tmp_path=None):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) if tmp_path else None
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 3
    if tmp_path is not None:  # nothing written or deleted
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    return err


def test_missing_corpus_file(tmp_path, capsys):
    config = files_config(tmp_path, str(tmp_path / "missing"))
    assert_user_error(capsys, ["prepare", "--config", config], "corpus file not found", tmp_path)


def test_misaligned_corpus(tmp_path, capsys):
    write_lines(tmp_path / "t.en", ["a b", "c d", "e f"])
    write_lines(tmp_path / "t.de", ["a b", "c d"])
    err = assert_user_error(capsys, ["prepare", "--config", files_config(tmp_path, str(tmp_path / "t"))],
                            "not aligned")
    assert "t.en has 3 lines" in err and "t.de has 2" in err


def test_invalid_utf8(tmp_path, capsys):
    write_lines(tmp_path / "t.en", ["a", "b"])
    (tmp_path / "t.de").write_bytes(b"a\n\xff\xfe\n")
    assert_user_error(capsys, ["prepare", "--config", files_config(tmp_path, str(tmp_path / "t"))],
                      "t.de, line 2: invalid UTF-8")


def test_empty_after_cleaning(tmp_path, capsys):
    write_lines(tmp_path / "t.en", ["", "x", " "])
    write_lines(tmp_path / "t.de", ["y", "", "\t"])
    assert_user_error(capsys, ["prepare", "--config", files_config(tmp_path, str(tmp_path / "t"))],
                      "empty after cleaning")


def test_unknown_key(tmp_path, capsys):
    raw = tiny_config(tmp_path)
    raw["train"]["max_step"] = 5
    config = write_config(tmp_path / "c.yaml", raw)
    assert_user_error(capsys, ["train", "--config", config], "unknown config key 'train.max_step'", tmp_path)


def test_yaml_syntax_error(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  max_steps: [1, 2\n")
    assert_user_error(capsys, ["prepare", "--config", config], "c.yaml, line", tmp_path)


def test_bad_override(tmp_path, capsys):
    prefix = write_corpus(tmp_path, "train")
    config = files_config(tmp_path, prefix)
    assert_user_error(capsys, ["train", "--config", config, "--set", "model.d_model=31"],
                      "model.d_model (31) must be divisible by model.n_heads (2)", tmp_path)


def test_existing_run_directory_is_refused(tmp_path, capsys):
    prefix = write_corpus(tmp_path, "train")
    config = files_config(tmp_path, prefix)
    run = tmp_path / "run"
    run.mkdir()
    (run / "precious.txt").write_text("keep me")
    assert_user_error(capsys, ["train", "--config", config], "already exists: pass --resume", tmp_path)
    assert (run / "precious.txt").read_text() == "keep me"


def test_resume_without_run_directory(tmp_path, capsys):
    prefix = write_corpus(tmp_path, "train")
    assert_user_error(capsys, ["train", "--config", files_config(tmp_path, prefix), "--resume"],
                      "does not exist or is empty")


def test_exit_code_and_no_traceback_in_a_real_process(tmp_path):
    raw = {"model": {"d_model": 10, "n_heads": 3}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = subprocess.run([sys.executable, "-m", "translate", "prepare", "--config", str(config)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "model.d_model (10) must be divisible by model.n_heads (3)" in result.stderr
    assert "data.train.source must name a corpus" in result.stderr


def test_data_error_during_train_leaves_no_run_directory(tmp_path, capsys):
    config = files_config(tmp_path, str(tmp_path / "missing"))
    assert_user_error(capsys, ["train", "--config", config], "corpus file not found", tmp_path)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_cuda_device_without_a_gpu_names_the_setting_and_the_fix(tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, train={"device": "cuda"}))
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "train.device is 'cuda' but no CUDA GPU is available; use --set train.device=cpu" in err
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt"), "--device", "cuda:0"]) == 2
    assert "--device is 'cuda:0' but no CUDA GPU is available; use --device cpu" in capsys.readouterr().err
