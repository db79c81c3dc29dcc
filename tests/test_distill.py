"""Word-level knowledge distillation: the fused loss against a direct formula, its gradient, the
temperature schedule, the teacher's vocabulary, the skipped-step guard."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

import translate.train as train_module
from translate.checkpoint import load_checkpoint
from translate.cli import main
from translate.config import CorpusConfig, DistillConfig, Source, config_from_dict
from translate.corpus import normalize, read_lines, read_pairs
from translate.distill import linear_distillation_loss, temperature_at, training_progress
from translate.errors import UserError
from translate.loss import linear_label_smoothed_cross_entropy
from translate.train import train

from conftest import REPO, tiny_config, write_config

PAD = 0


def reference(logits, teacher_logits, target, *, epsilon, alpha, temperature):
    """The KD loss sum written out directly: (1 − α)·LS-CE + α·T²·KL(softmax(t/T) ‖ softmax(s/T))."""
    ce = F.cross_entropy(logits, target, label_smoothing=epsilon, reduction="sum")
    p = (teacher_logits / temperature).softmax(-1)
    log_q = (logits / temperature).log_softmax(-1)
    kl = (p * (p.log() - log_q)).sum()
    return (1 - alpha) * ce + alpha * temperature ** 2 * kl, ce, kl


def random_problem(seed=0, N=13, D=6, D_teacher=9, V=17, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, D, generator=g, dtype=dtype)
    weight = torch.randn(V, D, generator=g, dtype=dtype)
    teacher_hidden = torch.randn(N, D_teacher, generator=g, dtype=dtype)
    teacher_weight = torch.randn(V, D_teacher, generator=g, dtype=dtype)
    target = torch.randint(1, V, (N,), generator=g)
    return hidden, weight, teacher_hidden, teacher_weight, target


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_loss_equals_the_direct_formula_and_its_gradient_autograd(alpha, temperature):
    hidden, weight, teacher_hidden, teacher_weight, target = random_problem()
    settings = dict(epsilon=0.1, alpha=alpha, temperature=temperature)
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    sums = linear_distillation_loss(h, w, teacher_hidden, teacher_weight, target, **settings)
    sums.loss.backward()

    rh, rw = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    expected, ce, kl = reference(rh @ rw.T, teacher_hidden @ teacher_weight.T, target, **settings)
    expected.backward()
    torch.testing.assert_close(sums.loss, expected)
    torch.testing.assert_close(sums.ce, ce)
    torch.testing.assert_close(sums.kl, kl)
    torch.testing.assert_close(sums.kd_term, alpha * temperature ** 2 * kl)
    torch.testing.assert_close(sums.nll, F.cross_entropy(rh @ rw.T, target, reduction="sum"))
    torch.testing.assert_close(h.grad, rh.grad)
    torch.testing.assert_close(w.grad, rw.grad)
    assert sums.n_tokens.item() == len(target)


@pytest.mark.parametrize("alpha", [0.0, 0.7, 1.0])
def test_gradient_wrt_student_logits_is_the_closed_form(alpha):
    """(1 − α)(p − q) + α·T·(softmax(s/T) − softmax(t/T)): with the identity as output weight and
    the logits as hidden states, the hidden states' gradient is the logits' gradient."""
    T, epsilon, V = 3.0, 0.1, 17
    _, _, _, _, target = random_problem(seed=1)
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(13, V, generator=g, dtype=torch.float64) * 4, torch.randn(13, V, generator=g, dtype=torch.float64) * 4
    eye = torch.eye(V, dtype=torch.float64)
    logits = s.clone().requires_grad_()
    linear_distillation_loss(logits, eye, t, eye, target, epsilon=epsilon, alpha=alpha, temperature=T).loss.backward()
    q = (1 - epsilon) * F.one_hot(target, V) + epsilon / V
    closed = (1 - alpha) * (s.softmax(-1) - q) + alpha * T * ((s / T).softmax(-1) - (t / T).softmax(-1))
    torch.testing.assert_close(logits.grad, closed)
    via_autograd = s.clone().requires_grad_()
    reference(via_autograd, t, target, epsilon=epsilon, alpha=alpha, temperature=T)[0].backward()
    torch.testing.assert_close(logits.grad, via_autograd.grad)


def test_alpha_zero_is_todays_loss_exactly():
    hidden, weight, teacher_hidden, teacher_weight, target = random_problem(dtype=torch.float32)
    grads = {}
    for name in ("plain", "kd"):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        if name == "plain":
            sums = linear_label_smoothed_cross_entropy(h, w, target, epsilon=0.1, chunk_rows=5)
        else:
            sums = linear_distillation_loss(h, w, teacher_hidden, teacher_weight, target, epsilon=0.1, alpha=0.0,
                                            temperature=2.0, chunk_rows=5)
        sums.loss.backward()
        grads[name] = (sums.loss, sums.nll, sums.n_correct, h.grad, w.grad)
    for plain, kd in zip(grads["plain"], grads["kd"]):
        assert torch.equal(plain, kd)


def test_a_tiny_chunk_gives_the_same_loss_and_gradients():
    hidden, weight, teacher_hidden, teacher_weight, target = random_problem(dtype=torch.float32)
    results = []
    for chunk_rows in (1, 4, None):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        sums = linear_distillation_loss(h, w, teacher_hidden, teacher_weight, target, epsilon=0.1, alpha=0.5,
                                        temperature=2.0, chunk_rows=chunk_rows)
        sums.loss.backward()
        results.append((sums.loss, sums.ce, sums.nll, sums.kl, h.grad, w.grad))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b)


def test_bf16_matmuls_give_float32_sums_close_to_float32():
    hidden, weight, teacher_hidden, teacher_weight, target = random_problem(dtype=torch.float32)
    settings = dict(epsilon=0.1, alpha=0.5, temperature=2.0)
    full = linear_distillation_loss(hidden, weight, teacher_hidden, teacher_weight, target, **settings)
    low = linear_distillation_loss(hidden, weight, teacher_hidden, teacher_weight, target, compute_dtype=torch.bfloat16,
                                   **settings)
    assert low.loss.dtype == low.kl.dtype == torch.float32
    torch.testing.assert_close(low.loss, full.loss, rtol=0.03, atol=0.0)


def test_padding_gets_zero_gradient_and_its_garbage_changes_nothing():
    """The training path selects the non-pad rows (Batch.target_index) before the loss: pad positions
    get an exactly zero gradient, and NaN in the teacher's states there cannot reach the loss."""
    g = torch.Generator().manual_seed(3)
    B, T, D, V = 3, 5, 6, 11
    target = torch.randint(1, V, (B, T), generator=g)
    target[0, 3:] = PAD
    target[2, 1:] = PAD
    index = (target != PAD).flatten().nonzero().squeeze(-1)
    weight = torch.randn(V, D, generator=g)
    teacher_states = torch.randn(B, T, D, generator=g)
    results = []
    for garbage in (0.0, math.nan):
        states = torch.randn(B, T, D, generator=torch.Generator().manual_seed(4)).requires_grad_()
        dirty = teacher_states.clone()
        dirty[target == PAD] = garbage
        sums = linear_distillation_loss(states.flatten(0, 1).index_select(0, index), weight,
                                        dirty.flatten(0, 1).index_select(0, index), weight, target.flatten()[index],
                                        epsilon=0.1, alpha=0.5, temperature=2.0)
        sums.loss.backward()
        assert torch.equal(states.grad[target == PAD], torch.zeros_like(states.grad[target == PAD]))
        assert states.grad[target != PAD].abs().sum() > 0
        results.append(sums.loss)
    assert torch.equal(results[0], results[1])


def test_temperature_schedule_exact_values():
    linear = DistillConfig(teacher="t.pt", temperature=4.0, temperature_end=1.0, temperature_schedule="linear")
    assert [temperature_at(p, linear) for p in (0.0, 0.5, 1.0)] == [4.0, 2.5, 1.0]
    constant = DistillConfig(teacher="t.pt", temperature=2.0, temperature_end=1.0)
    assert [temperature_at(p, constant) for p in (0.0, 0.5, 1.0)] == [2.0, 2.0, 2.0]
    steps = config_from_dict(tiny_config(__import__("pathlib").Path("."), train={"max_steps": 200})).train
    assert [training_progress(step=s, elapsed=99.0, train=steps) for s in (0, 100, 200, 250)] == [0.0, 0.5, 1.0, 1.0]
    timed = config_from_dict(tiny_config(__import__("pathlib").Path("."), train={"max_steps": 0, "max_time": 60})).train
    assert [training_progress(step=7, elapsed=e, train=timed) for e in (0.0, 15.0, 60.0)] == [0.0, 0.25, 1.0]


def test_distill_settings_are_validated(tmp_path):
    raw = tiny_config(tmp_path, train={"max_steps": 0, "max_epochs": 2},
                      distill={"teacher": "t.pt", "alpha": 1.5, "temperature": 0, "temperature_schedule": "linear"})
    with pytest.raises(UserError) as error:
        config_from_dict(raw)
    message = str(error.value)
    assert "distill.alpha (1.5) must be in [0, 1]" in message
    assert "distill.temperature (0.0) must be positive" in message
    assert "distill.temperature_schedule linear needs train.max_steps or train.max_time" in message
    assert config_from_dict(tiny_config(tmp_path)).distill.teacher == ""  # absent: no distillation


# ---------------------------------------------------------------------------------------------
# With a real (briefly trained) teacher


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teacher")
    raw = tiny_config(tmp, train={"max_steps": 10, "eval_every": 100}, eval={"dev_bleu_sentences": 0})
    assert train(config_from_dict(raw)) == 0
    return tmp / "run" / "checkpoint_last.pt", raw


def student(tmp_path, teacher, **distill):
    raw = tiny_config(tmp_path, model={"d_model": 16, "d_ff": 32}, eval={"dev_bleu_sentences": 0},
                      distill={"teacher": str(teacher), "alpha": 0.5, "temperature": 2.0, **distill})
    return raw


def test_a_contradicting_vocabulary_is_exit_2_naming_the_teachers_spm_model(tiny_teacher, tmp_path, capsys):
    checkpoint, _ = tiny_teacher
    raw = student(tmp_path, checkpoint)
    raw["data"]["vocab_size"] = 400
    config = write_config(tmp_path / "student.yaml", raw)
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    spm = (checkpoint.parent / "spm.model").resolve()
    assert "data.vocab_size is 400 but the teacher's is 300" in err and str(checkpoint.parent / "spm.model") in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()  # nothing written, no step taken
    assert spm.is_file()


def test_student_uses_the_teachers_tokenizer_and_logs_every_part(tiny_teacher, tmp_path):
    checkpoint, _ = tiny_teacher
    raw = student(tmp_path, checkpoint, temperature_schedule="linear", temperature=3.0, temperature_end=1.0)
    raw["train"].update(max_steps=10, log_every=5)
    assert train(config_from_dict(raw)) == 0
    run = tmp_path / "run"
    assert (run / "spm.model").read_bytes() == (checkpoint.parent / "spm.model").read_bytes()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if r["kind"] == "train"]
    assert [r["temperature"] for r in logged] == [3.0 - 2.0 * 4 / 10, 3.0 - 2.0 * 9 / 10]  # T of the logging step
    for r in logged:
        assert r["loss"] == pytest.approx(0.5 * r["ce"] + r["kd_term"], rel=1e-4)
        assert r["kd_kl"] > 0 and r["nll"] < r["ce"] + 1e-6
    valid = [r for r in records if r["kind"] == "valid"][-1]
    assert valid["ppl"] == pytest.approx(math.exp(valid["nll"]), rel=1e-5)
    assert "kd_kl" not in valid


def test_nan_in_the_teachers_logits_is_a_skipped_step(tiny_teacher, tmp_path, monkeypatch):
    checkpoint, _ = tiny_teacher
    raw = student(tmp_path, checkpoint)
    raw["train"].update(max_steps=6, log_every=1)
    real = train_module.teacher_hidden
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        hidden = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the third training batch: one target's teacher logits are NaN
            hidden = hidden.clone()
            hidden[0] = math.nan
        return hidden

    monkeypatch.setattr(train_module, "teacher_hidden", poisoned)
    assert train(config_from_dict(raw)) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in records if r["kind"] == "skipped"]
    assert [(r["step"], r["what"]) for r in skipped] == [(2, "loss")]
    logged = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5, 6] and logged[-1]["skipped_steps"] == 1
    assert all(math.isfinite(r["kd_kl"]) and math.isfinite(r["loss"]) for r in logged)


# ---------------------------------------------------------------------------------------------
# translate distill-data


def distill_data_argv(tiny_teacher, tmp_path, *extra):
    checkpoint, _ = tiny_teacher
    raw = tiny_config(tmp_path, eval={"beam": 2, "max_len_b": 8})
    raw["data"]["train"] = {"source": "synthetic", "size": 25, "seed": 5}
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_config(tmp_path / "source.yaml", raw)
    return ["distill-data", "--teacher", str(checkpoint), "--config", str(config), "--output",
            str(tmp_path / "kd" / "train"), "--chunk-sentences", "10", *extra]


def test_distill_data_writes_aligned_files_and_a_record(tiny_teacher, tmp_path, capsys):
    assert main(distill_data_argv(tiny_teacher, tmp_path, "--xz")) == 0
    kd = tmp_path / "kd"
    assert sorted(p.name for p in kd.iterdir()) == ["train.de.xz", "train.distill.json", "train.en.xz"]
    sources, translations = list(read_lines(kd / "train.en.xz")), list(read_lines(kd / "train.de.xz"))
    corpus = CorpusConfig(source=Source.SYNTHETIC, size=25, seed=5)
    assert sources == [normalize(src) for src, _ in read_pairs(corpus, src_lang="en", tgt_lang="de")]
    assert len(translations) == 25 and sum(bool(t) for t in translations) > 20
    record = json.loads((kd / "train.distill.json").read_text())
    checkpoint, _ = tiny_teacher
    assert record["teacher_digest"] == load_checkpoint(checkpoint)["digest"]
    assert (record["beam"], record["max_len_b"], record["sentences"], record["dtype"]) == (2, 8, 25, "float32")
    assert "25 sentences" in capsys.readouterr().out
    # done once: a second call refuses rather than overwrite
    assert main(distill_data_argv(tiny_teacher, tmp_path, "--xz")) == 2
    assert "already wrote" in capsys.readouterr().err


def test_distill_data_resumes_from_the_finished_chunks(tiny_teacher, tmp_path, monkeypatch):
    import translate.distill_data as distill_data

    real = distill_data.translate_sentences
    calls = []

    def interrupted_at_the_third_chunk(model, tokenizer, sources, **kwargs):
        calls.append(len(sources))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(model, tokenizer, sources, **kwargs)

    monkeypatch.setattr(distill_data, "translate_sentences", interrupted_at_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        main(distill_data_argv(tiny_teacher, tmp_path / "a"))
    parts = tmp_path / "a" / "kd" / "train.parts"
    assert sorted(p.name for p in parts.glob("chunk-*")) == ["chunk-000000.de", "chunk-000000.en",
                                                              "chunk-000001.de", "chunk-000001.en"]
    monkeypatch.setattr(distill_data, "translate_sentences", real)
    calls.clear()
    monkeypatch.setattr(distill_data, "translate_sentences", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    assert main(distill_data_argv(tiny_teacher, tmp_path / "a")) == 0
    assert calls == [5] and not parts.exists()  # only the last chunk (sentences 21-25) was decoded again
    assert main(distill_data_argv(tiny_teacher, tmp_path / "b")) == 0  # uninterrupted
    for lang in ("en", "de"):
        resumed, whole = (tmp_path / x / "kd" / f"train.{lang}" for x in ("a", "b"))
        assert resumed.read_bytes() == whole.read_bytes()


def test_distill_data_resumes_only_with_the_same_settings(tiny_teacher, tmp_path, monkeypatch, capsys):
    import translate.distill_data as distill_data

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(distill_data, "translate_sentences", stop)
    with pytest.raises(KeyboardInterrupt):
        main(distill_data_argv(tiny_teacher, tmp_path))
    assert main(distill_data_argv(tiny_teacher, tmp_path, "--beam", "3")) == 2
    assert "other settings (beam)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# End to end: the demo model teaches a smaller student, word-level and sequence-level


def small_student(tmp_path, **data) -> dict:
    """A third of the demo's parameters (d_model 64, one layer each side, d_ff 128), 200 steps on 2,000
    synthetic pairs of another seed than the teacher's corpus."""
    return {"base": str(REPO / "configs" / "demo.yaml"),
            "model": {"preset": "", "d_model": 64, "n_heads": 4, "d_ff": 128, "n_encoder_layers": 1,
                      "n_decoder_layers": 1},
            "data": {"data_dir": str(tmp_path / "data"), "train": {"source": "synthetic", "size": 2000, "seed": 7},
                     "test": {"source": "synthetic", "size": 100, "seed": 3}, **data},
            "optim": {"lr": 4e-3, "warmup_steps": 50},
            "train": {"max_steps": 200, "eval_every": 100, "log_every": 50, "out_dir": str(tmp_path / "run")},
            "eval": {"dev_bleu_sentences": 50, "beam": 2}}


def assert_learned(run) -> None:
    valid = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [100, 200]
    assert valid[1]["nll"] < valid[0]["nll"] - 0.5, valid
    assert valid[1]["bleu"] > 5, valid


def test_demo_teacher_distils_into_a_smaller_student(demo_run, tmp_path):
    raw = small_student(tmp_path)
    raw["distill"] = {"teacher": str(demo_run / "checkpoint_best.pt"), "alpha": 0.5, "temperature": 2.0}
    assert main(["train", "--config", str(write_config(tmp_path / "student.yaml", raw))]) == 0
    assert_learned(tmp_path / "run")
    student = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    teacher = load_checkpoint(demo_run / "checkpoint_best.pt")
    sizes = [(s["config"]["model"]["d_ff"], s["config"]["model"]["n_encoder_layers"]) for s in (student, teacher)]
    assert sizes == [(128, 1), (256, 2)] and student["vocab_size"] == teacher["vocab_size"]


def test_a_student_trains_on_distill_data_output(demo_run, tmp_path):
    raw = small_student(tmp_path)
    config = write_config(tmp_path / "source.yaml", raw)
    prefix = tmp_path / "kd" / "train"
    assert main(["distill-data", "--teacher", str(demo_run / "checkpoint_best.pt"), "--config", str(config),
                 "--output", str(prefix), "--chunk-sentences", "1000"]) == 0
    raw["data"]["train"] = {"source": "files", "prefix": str(prefix)}
    raw["data"]["spm_model"] = str(demo_run / "spm.model")  # the teacher's vocabulary, as word-level KD has it
    assert main(["train", "--config", str(write_config(tmp_path / "student.yaml", raw))]) == 0
    assert_learned(tmp_path / "run")
