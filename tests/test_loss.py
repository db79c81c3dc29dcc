"""Tests for translate.loss: agreement with PyTorch, padding exclusion, dtypes, gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from translate.loss import label_smoothed_cross_entropy, linear_label_smoothed_cross_entropy

PAD = 0


def random_data(seed=0, B=4, T=7, V=11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * 3
    target = torch.randint(1, V, (B, T), generator=g)
    target[0, 5:] = PAD
    target[2, 2:] = PAD
    target[3, 0] = PAD
    return logits, target


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.2, 0.5])
def test_equals_pytorch_cross_entropy(epsilon):
    logits, target = random_data()
    sums = label_smoothed_cross_entropy(logits, target, epsilon=epsilon, pad_id=PAD)
    expected = F.cross_entropy(logits.view(-1, 11), target.view(-1), label_smoothing=epsilon,
                               ignore_index=PAD, reduction="sum")
    torch.testing.assert_close(sums.loss, expected)
    nll = F.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=PAD, reduction="sum")
    torch.testing.assert_close(sums.nll, nll)
    assert sums.n_tokens.item() == (target != PAD).sum().item() == 28 - 2 - 5 - 1
    assert sums.loss.shape == sums.nll.shape == sums.n_tokens.shape == sums.n_correct.shape == ()


def test_epsilon_zero_is_nll_and_smoothing_formula():
    logits, target = random_data(seed=1)
    sums = label_smoothed_cross_entropy(logits, target, epsilon=0.0, pad_id=PAD)
    assert sums.loss.item() == sums.nll.item()
    # A hand-checkable case: uniform logits over V = 4 give −log p_v = log 4 for every class.
    one = label_smoothed_cross_entropy(torch.zeros(1, 4), torch.tensor([2]), epsilon=0.1, pad_id=PAD)
    assert one.loss.item() == pytest.approx(math.log(4))
    assert one.nll.item() == pytest.approx(math.log(4))
    # logits (0, 0, log 3, 0): p = (1/6, 1/6, 1/2, 1/6), target 2.
    two = label_smoothed_cross_entropy(torch.tensor([[0.0, 0.0, math.log(3), 0.0]]), torch.tensor([2]),
                                       epsilon=0.2, pad_id=PAD)
    smooth = (3 * math.log(6) + math.log(2)) / 4
    assert two.loss.item() == pytest.approx(0.8 * math.log(2) + 0.2 * smooth)


@pytest.mark.parametrize("garbage", [float("nan"), float("inf"), float("-inf"), 1e30])
def test_logits_at_pad_positions_change_nothing(garbage):
    logits, target = random_data(seed=2)
    clean = label_smoothed_cross_entropy(logits, target, epsilon=0.1, pad_id=PAD)
    dirty_logits = logits.clone()
    dirty_logits[target == PAD] = garbage
    dirty = label_smoothed_cross_entropy(dirty_logits, target, epsilon=0.1, pad_id=PAD)
    for name in ("loss", "nll", "n_tokens", "n_correct"):
        assert torch.equal(getattr(dirty, name), getattr(clean, name)), name


def test_n_correct_counts_only_non_pad():
    target = torch.tensor([[5, 6, PAD, PAD], [7, PAD, PAD, PAD]])
    logits = torch.zeros(2, 4, 9)
    logits[0, 0, 5] = logits[0, 1, 1] = logits[1, 0, 7] = 5.0  # right, wrong, right
    logits[0, 2:, PAD] = logits[1, 1:, PAD] = 9.0  # argmax == PAD == target at pad positions: not counted
    sums = label_smoothed_cross_entropy(logits, target, epsilon=0.1, pad_id=PAD)
    assert sums.n_correct.item() == 2
    assert sums.n_tokens.item() == 3


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_logits_give_float32_sums(dtype):
    logits, target = random_data(seed=3)
    low = logits.to(dtype)
    sums = label_smoothed_cross_entropy(low, target, epsilon=0.1, pad_id=PAD)
    assert sums.loss.dtype == sums.nll.dtype == torch.float32
    expected = label_smoothed_cross_entropy(low.float(), target, epsilon=0.1, pad_id=PAD)
    torch.testing.assert_close(sums.loss, expected.loss)


def test_gradient_of_padded_rows_is_zero():
    logits, target = random_data(seed=4)
    logits[target == PAD] = float("nan")
    logits.requires_grad_(True)
    sums = label_smoothed_cross_entropy(logits, target, epsilon=0.1, pad_id=PAD)
    sums.loss.backward()
    grad = logits.grad
    assert torch.all(grad[target == PAD] == 0)
    assert torch.isfinite(grad).all()
    assert torch.all(grad[target != PAD].abs().sum(-1) > 0)
    # Each real row's gradient is softmax − smoothed target, which sums to zero over the vocabulary.
    torch.testing.assert_close(grad[target != PAD].sum(-1), torch.zeros(20), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------
# The fused projection + loss used in training equals the reference on materialised logits.


def projection_data(seed=5, N=37, D=6, V=13, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(N, D, generator=g) * 2).to(dtype).requires_grad_(True)
    weight = torch.randn(V, D, generator=g).to(dtype).requires_grad_(True)
    target = torch.randint(1, V, (N,), generator=g)
    return hidden, weight, target


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("chunk_rows", [1, 5, 37, 1000])  # one row per chunk, a ragged last chunk, one chunk
def test_fused_projection_loss_equals_reference_loss_and_gradients(epsilon, chunk_rows):
    hidden, weight, target = projection_data()
    reference = label_smoothed_cross_entropy(hidden @ weight.T, target, epsilon=epsilon, pad_id=PAD)
    upstream = 0.37  # the 1 / tokens (× loss scale) that training multiplies by
    ref_grads = torch.autograd.grad(reference.loss * upstream, (hidden, weight))
    fused = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=epsilon, chunk_rows=chunk_rows)
    grads = torch.autograd.grad(fused.loss * upstream, (hidden, weight))
    for name in ("loss", "nll"):
        torch.testing.assert_close(getattr(fused, name), getattr(reference, name), rtol=1e-6, atol=1e-5)
    assert fused.n_tokens.item() == reference.n_tokens.item() == 37
    assert fused.n_correct.item() == reference.n_correct.item()
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_fused_projection_loss_is_exact_in_float64():
    hidden, weight, target = projection_data(dtype=torch.float64)
    fused = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1, chunk_rows=8)
    expected = F.cross_entropy(hidden @ weight.T, target, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(fused.loss, expected, rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad(fused.loss, (hidden, weight))
    want = torch.autograd.grad(expected, (hidden, weight))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_fused_projection_loss_without_gradients_and_in_bfloat16():
    hidden, weight, target = projection_data()
    with torch.no_grad():
        plain = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1, chunk_rows=4)
        reference = label_smoothed_cross_entropy(hidden @ weight.T, target, epsilon=0.1, pad_id=PAD)
    assert not plain.loss.requires_grad
    torch.testing.assert_close(plain.loss, reference.loss)
    # bf16 matmuls (as under autocast), float32 sums, gradients in the inputs' own dtype.
    low = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1, compute_dtype=torch.bfloat16)
    assert low.loss.dtype == torch.float32
    torch.testing.assert_close(low.loss, reference.loss, rtol=2e-2, atol=0)
    grad_hidden, grad_weight = torch.autograd.grad(low.loss, (hidden, weight))
    assert grad_hidden.dtype == grad_weight.dtype == torch.float32


def test_compiled_chunk_passes_equal_the_eager_ones():
    # bench_loss.py --compiled: each chunk's elementwise passes through torch.compile; a ragged last
    # chunk (37 = 16 + 16 + 5 rows) goes through the same dynamic-shape graph.
    hidden, weight, target = projection_data(dtype=torch.float64)
    results = []
    for compiled in (False, True):
        sums = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1, chunk_rows=16, compiled=compiled)
        results.append((sums.loss, sums.nll, *torch.autograd.grad(sums.loss, (hidden, weight))))
        assert sums.n_correct.dtype == torch.long
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Diagnostics and the confidence penalty, against direct computations on materialised logits.


def direct_statistics(logits: torch.Tensor, target: torch.Tensor) -> dict:
    probs = logits.softmax(dim=-1)
    return {"max_logit": logits.max(dim=-1).values.sum(), "peak_logit": logits.max(),
            "entropy": -(probs * logits.log_softmax(dim=-1)).sum(),
            "confidence": probs.max(dim=-1).values.sum(), "p_target": probs.gather(-1, target[:, None]).sum()}


@pytest.mark.parametrize("chunk_rows", [1, 5, 1000])
@pytest.mark.parametrize("grad", [True, False])
def test_statistics_equal_a_direct_computation(chunk_rows, grad):
    hidden, weight, target = projection_data(dtype=torch.float64)
    hidden.data[3] *= 20  # one peaked row, so the peak and the means differ visibly
    with torch.set_grad_enabled(grad):
        fused = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1, chunk_rows=chunk_rows,
                                                    statistics=True)
    want = direct_statistics((hidden @ weight.T).detach(), target)
    for name, value in want.items():
        torch.testing.assert_close(getattr(fused, name).double(), value, rtol=1e-6, atol=1e-6, msg=name)
    assert fused.penalty is None and fused.row_confidence is None
    # The loss itself is unchanged by asking for statistics.
    plain = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1, chunk_rows=chunk_rows)
    torch.testing.assert_close(fused.loss, plain.loss, rtol=1e-12, atol=1e-12)
    assert plain.entropy is None


def test_statistics_of_float32_and_bfloat16_chunks():
    hidden, weight, target = projection_data()
    fused = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1, chunk_rows=4, statistics=True)
    want = direct_statistics((hidden @ weight.T).detach().double(), target)
    for name, value in want.items():
        assert getattr(fused, name).dtype == torch.float32
        torch.testing.assert_close(getattr(fused, name).double(), value, rtol=1e-5, atol=1e-4, msg=name)
    low = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1, compute_dtype=torch.bfloat16,
                                              statistics=True)
    torch.testing.assert_close(low.entropy.double(), want["entropy"], rtol=3e-2, atol=0)


def test_rows_give_each_tokens_confidence_and_correctness():
    hidden, weight, target = projection_data(dtype=torch.float64)
    target[:5] = (hidden @ weight.T)[:5].argmax(dim=-1)  # some certainly right
    fused = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1, chunk_rows=6, rows=True)
    probs = (hidden @ weight.T).detach().softmax(dim=-1)
    torch.testing.assert_close(fused.row_confidence.double(), probs.max(dim=-1).values, rtol=1e-6, atol=1e-7)
    assert torch.equal(fused.row_correct, probs.argmax(dim=-1) == target)
    assert fused.row_correct[:5].all() and fused.row_correct.sum().item() == fused.n_correct.item()


@pytest.mark.parametrize("beta", [0.1, 1.5])
@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_confidence_penalty_loss_and_gradient_equal_autograd(beta, chunk_rows):
    hidden, weight, target = projection_data(dtype=torch.float64)
    logits = hidden @ weight.T
    log_probs = logits.log_softmax(dim=-1)
    entropy = -(log_probs.exp() * log_probs).sum()
    reference = F.cross_entropy(logits, target, label_smoothing=0.1, reduction="sum") - beta * entropy
    want = torch.autograd.grad(reference * 0.37, (hidden, weight))
    fused = linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1, chunk_rows=chunk_rows,
                                                confidence_penalty=beta)
    got = torch.autograd.grad(fused.loss * 0.37, (hidden, weight))
    torch.testing.assert_close(fused.loss, reference, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(fused.penalty.double(), -beta * entropy, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fused.nll, F.cross_entropy(logits, target, reduction="sum"), rtol=1e-12, atol=1e-10)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    # The penalty moves the gradient: without it the same call differs.
    plain = torch.autograd.grad(linear_label_smoothed_cross_entropy(hidden, weight, target, epsilon=0.1).loss,
                                (hidden, weight))
    assert not torch.allclose(plain[0] * 0.37, got[0])
