"""The peer comparison of docs/RESULTS.md: translate's runs of a newstest track against the Hugging
Face MarianMTModel trained beside them (scripts/peer_marian.py), with the isolated training speeds of
scripts/bench_train.py. Pure functions from loaded records to tables and sentences."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from report_common import (DASH, Bench, Peer, Run, Smoke, arms, best_record, fmt, fmt_int, fmt_lr, log_parameters,
                           markdown_table, median_tokens_per_s, shared_steps, value_at_step)


@dataclass(frozen=True)
class System:
    """One trained model in the peer comparison, at its best (lowest dev NLL) weights."""

    name: str
    eps: float
    norm: str                # "pre-norm" / "post-norm"
    parameters: int | None
    steps: int
    budget_s: float          # the time limit of the whole training loop
    train: list[dict]        # kind == "train" records
    valid: list[dict]        # kind == "valid" records (dev NLL per target token)
    test: dict               # newstest2014 scores: bleu, chrf, length_ratio, sentences_per_second
    eval_seconds: float | None = None  # validation time inside the loop, where the system reports it
    eval_every: int | None = None      # translate: train.eval_every
    dev_bleu_sentences: int | None = None  # translate: eval.dev_bleu_sentences

    @property
    def best(self) -> dict:
        return best_record(self.valid)


def our_system(run: Run) -> System:
    norm = "pre-norm" if run.config("model.norm_first") == "true" else "post-norm"
    return System(f"translate, ε = {run.eps}", run.eps, norm, log_parameters(run.log), run.steps,
                  float(run.config("train.max_time")), run.train, run.valid, run.evals["best"],
                  eval_every=int(run.config("train.eval_every")),
                  dev_bleu_sentences=int(run.config("eval.dev_bleu_sentences")))


def peer_system(peer: Peer) -> System:
    eps = peer.summary["config"]["train"]["label_smoothing"]
    return System(f"HF MarianMTModel, ε = {eps}", eps, peer.norm, peer.summary["parameters"], peer.steps,
                  peer.summary["budget"]["max_time"], peer.train, peer.valid, peer.test,
                  peer.summary.get("eval_seconds_in_loop"))


def systems(runs: list[Run], peer: Peer) -> list[System]:
    return [our_system(r) for r in arms(runs)] + [peer_system(peer)]


def in_budget_steps(group: list[System | Run]) -> list[int]:
    """Validation steps every system (or run) has, before any of them stopped (the periodic validations)."""
    return [s for s in shared_steps(*(g.valid for g in group)) if s < min(g.steps for g in group)]


def peer_table(group: list[System]) -> str:
    steps = in_budget_steps(group)
    head = (["system", "norm", "parameters", "steps", "time budget s", "median tgt tokens/s"] +
            [f"dev NLL at step {s}" for s in steps] +
            ["best dev NLL (step)", "best dev PPL", "test BLEU", "test chrF", "length ratio", "decode sent/s"])
    rows = [[g.name, g.norm, fmt_int(g.parameters), str(g.steps), fmt(g.budget_s, 0),
             fmt_int(median_tokens_per_s(g.train))] +
            [fmt(value_at_step(g.valid, s, "nll"), 3) for s in steps] +
            [f"{g.best['nll']:.3f} ({g.best['step']})", fmt(math.exp(g.best["nll"]), 1),
             fmt(g.test["bleu"], 2), fmt(g.test["chrf"], 2), fmt(g.test["length_ratio"], 3),
             fmt(g.test["sentences_per_second"], 1)] for g in group]
    return markdown_table(head, rows)


def speed_ratio_table(group: list[System], bench: Bench) -> str:
    """translate vs the peer: target tokens/s alone on the GPU (bench) and side by side (this run)."""
    ours, peer = group[:-1], group[-1]
    shared = [median_tokens_per_s(g.train) for g in ours]
    peer_shared = median_tokens_per_s(peer.train)
    alone, alone_peer = bench.rates["translate"], bench.rates["hf_marian"]

    def each(values, fmt_one) -> str:
        return " / ".join(fmt_one(v) for v in values)

    def ratio(value: float) -> str:
        return f"{value:.2f}×"

    head = ["", f"translate (ε = {each([g.eps for g in ours], str)})", peer.name, "translate / peer"]
    rows = [
        ["alone on the GPU: tgt tokens/s (`scripts/bench_train.py`)", fmt_int(alone), fmt_int(alone_peer),
         ratio(alone / alone_peer)],
        ["side by side here: median tgt tokens/s", each(shared, fmt_int), fmt_int(peer_shared),
         each([s / peer_shared for s in shared], ratio)],
        [f"side by side here: steps in {fmt(peer.budget_s, 0)} s", each([g.steps for g in ours], str),
         str(peer.steps), each([g.steps / peer.steps for g in ours], ratio)],
    ]
    return markdown_table(head, rows)


def peer_ahead(group: list[System]) -> bool:
    """Whether the peer (last) has a lower dev NLL at every shared validation and at its best, and
    a higher test BLEU, than every translate run."""
    ours, peer = group[:-1], group[-1]
    nll_lower = all(value_at_step(peer.valid, s, "nll") < min(value_at_step(g.valid, s, "nll") for g in ours)
                    for s in in_budget_steps(group))
    return (nll_lower and peer.best["nll"] < min(g.best["nll"] for g in ours)
            and peer.test["bleu"] > max(g.test["bleu"] for g in ours))


def validation_windows(run: Run) -> list[tuple[float, float]]:
    """(start, end) on the run's loop clock of each logged interval that contains a periodic
    validation: from the train record at the validation step to the next train record."""
    steps = {r["step"] for r in run.valid}
    return [(a["elapsed_s"], b["elapsed_s"]) for a, b in zip(run.train, run.train[1:]) if a["step"] in steps]


def rates_during(train: list[dict], windows: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Logged tokens/s of the intervals of `train` that overlap any window, and of the others."""
    inside, outside = [], []
    for a, b in zip(train, train[1:]):
        overlaps = any(a["elapsed_s"] < end and start < b["elapsed_s"] for start, end in windows)
        (inside if overlaps else outside).append(b["tgt_tokens_per_s"])
    return inside, outside



# ---------------------------------------------------------------- wording


def parameter_note(group: list[System], peer: Peer) -> str:
    """Explains the parameter counts when they differ by exactly the peer's sinusoidal position tables
    (stored as untrained parameters) less translate's two final pre-norm LayerNorms."""
    model = peer.summary["config"]["model"]
    tables = 2 * model["max_positions"] * model["d_model"]
    final_norms = 2 * 2 * model["d_model"]
    ours = group[0]
    if ours.parameters is None or group[-1].parameters - ours.parameters != tables - final_norms:
        return ""
    return (f"Parameters differ by {group[-1].parameters - ours.parameters:,}: the peer counts its two sinusoidal "
            f"position tables (2 × {model['max_positions']} × {model['d_model']} = {tables:,}, not trained), "
            f"translate's pre-norm adds two final LayerNorms ({final_norms:,}).")


def slash(values, digits: int) -> str:
    """[1.234, 5.678], 2 -> "1.23 / 5.68": one value per translate arm."""
    return " / ".join(f"{v:.{digits}f}" for v in values)


def per_step_bullet(group: list[System]) -> str:
    """Dev NLL at every shared validation and at the best, test scores, and the training NLL on the
    same batches: who learned more per step."""
    ours, peer = group[:-1], group[-1]
    at_steps = "; ".join(f"at step {s} {value_at_step(peer.valid, s, 'nll'):.3f} vs "
                         f"{slash([value_at_step(g.valid, s, 'nll') for g in ours], 3)}"
                         for s in in_budget_steps(group))
    last = max(shared_steps(peer.train, *(g.train for g in ours)))
    verdict = (f"At about equal steps the {peer.norm} HF Marian learned clearly more per step than our "
               f"{ours[0].norm} recipe: lower dev NLL at every validation and higher test BLEU. "
               if peer_ahead(group) else "The peer is not ahead on every measure; see the table. ")
    return (
        f"- **Peer baseline, per step.** {peer.name} ({peer.norm}) ran {peer.steps} steps, translate "
        f"{slash([g.steps for g in ours], 0)} (ε = 0.1 / 0), in the same {fmt(peer.budget_s, 0)} s. Best dev NLL "
        f"{peer.best['nll']:.3f} vs {slash([g.best['nll'] for g in ours], 3)} (PPL {math.exp(peer.best['nll']):.1f} "
        f"vs {slash([math.exp(g.best['nll']) for g in ours], 1)}); {at_steps}. Test BLEU "
        f"{peer.test['bleu']:.2f} vs {slash([g.test['bleu'] for g in ours], 2)}, chrF {peer.test['chrf']:.2f} vs "
        f"{slash([g.test['chrf'] for g in ours], 2)}. On the same training batches in the same order, the "
        f"training NLL of the 50 steps up to step {last} (dropout on) was {value_at_step(peer.train, last, 'nll'):.2f} "
        f"vs {slash([value_at_step(g.train, last, 'nll') for g in ours], 2)}: it also fitted the training data "
        f"faster per step. " + verdict + "One seed each.")


def shared_gpu_bullet(group: list[System], runs: list[Run], bench: Bench) -> str:
    """Why equal wall time on a shared GPU says little about speed: the isolated ratio against the
    shared one, and the peer's rate while our runs validated."""
    ours, peer = group[:-1], group[-1]
    inside, outside = rates_during(peer.train, [w for r in runs for w in validation_windows(r)])
    shared = [median_tokens_per_s(g.train) for g in ours]
    peer_rate = median_tokens_per_s(peer.train)
    alone, alone_peer = bench.rates["translate"], bench.rates["hf_marian"]
    return (
        f"- **Equal wall time on a shared GPU is not equal GPU time.** Processes sharing a GPU are "
        f"time-sliced by its scheduler. Alone on the same GPU, on the same batches (`{bench.path.as_posix()}`), "
        f"translate trains {alone / alone_peer:.2f}× as many target tokens/s as HF Marian ({fmt_int(alone)} vs "
        f"{fmt_int(alone_peer)}); side by side here the medians were {' / '.join(fmt_int(s) for s in shared)} vs "
        f"{fmt_int(peer_rate)} ({slash([s / peer_rate for s in shared], 2)}×) and the step counts "
        f"{slash([g.steps / peer.steps for g in ours], 2)}×. The peer's share moved with what the others did: "
        f"in its {len(inside)} logged intervals that overlap a validation of our runs (the three loop clocks "
        f"taken as starting together) it logged a median {fmt_int(statistics.median(inside))} tokens/s, against "
        f"{fmt_int(statistics.median(outside))} in the other {len(outside)}. So this run compares learning per "
        f"step more than speed, and says nothing about what each system reaches in equal GPU time: v4 "
        f"measures that, each system alone on the GPU.")


def norm_bullet(group: list[System], peer_run: Peer, smoke: Smoke) -> str:
    """The likely factor (norm placement), with what translate's own post-norm smoke run adds to it."""
    ours, peer = group[:-1], group[-1]
    spike = max(smoke.train, key=lambda r: r["grad_norm"])
    before = smoke.train[smoke.train.index(spike) - 1]
    calm = max(peer.train, key=lambda r: r["grad_norm"])
    optim = peer_run.summary["config"]["optim"]
    first = in_budget_steps(group)[0]
    early = [r for r in smoke.valid if r["step"] < spike["step"]]
    warming = ", the lr still rising in warm-up" if smoke.train[-1]["lr"] > spike["lr"] else ""
    return (
        f"- **Why, possibly.** A likely factor is the norm placement: {peer.norm} in Marian (it has no other), "
        f"{ours[0].norm} in our recipe. We chose pre-norm because translate's post-norm smoke run (peak lr 1e-3) "
        f"spiked at step {spike['step']:.0f} (logged grad norm {spike['grad_norm']:.1f} at lr {spike['lr']:.2e}"
        f"{warming}; training NLL {before['nll']:.2f} → {smoke.train[-1]['nll']:.2f} by step "
        f"{smoke.train[-1]['step']:.0f}), whereas HF's post-norm at peak lr {fmt_lr(optim['lr'])} with warm-up "
        f"{optim['warmup_steps']} trained stably here (largest logged grad norm {calm['grad_norm']:.2f}, at step "
        f"{calm['step']}; grad norms are logged every 50 steps). Yet before its spike the smoke run's dev NLL was "
        f"only {slash([r['nll'] for r in early], 2)} (steps {', '.join(str(int(r['step'])) for r in early)}), "
        f"where the peer had {value_at_step(peer.valid, first, 'nll'):.2f} at step {first}: translate's own "
        f"post-norm did not learn like HF's, so these runs do not settle the cause (the smoke run also had a "
        f"higher lr, older code, and a config its log does not keep). Other differences they do not separate: "
        f"the initialisation (HF's normal(0, 0.02), translate's xavier-uniform) and, for test BLEU only, the "
        f"peer's length penalty ({peer.test['lenpen_formula']}). v4 changes norm placement and initialisation "
        f"together.")


def peer_reading(group: list[System], runs: list[Run], peer: Peer, bench: Bench, smoke: Smoke) -> list[str]:
    """The three bullets of the peer comparison, for the Reading section."""
    return [per_step_bullet(group), shared_gpu_bullet(group, runs, bench), norm_bullet(group, peer, smoke)]


# ---------------------------------------------------------------- equal GPU time (each system alone)


def nll_trace(group: list[System]) -> str:
    """"at step 500: 6.279 vs 6.300; ...": dev NLL of the first system against the last at the
    validations both have before either stopped."""
    ours, peer = group[0], group[-1]
    return "; ".join(f"{s}: {value_at_step(ours.valid, s, 'nll'):.3f} vs {value_at_step(peer.valid, s, 'nll'):.3f}"
                     for s in in_budget_steps(group))


def equal_time_headline(group: list[System], same_steps: System) -> str:
    """The v4 headline: translate (ε = 0.1) and the peer, each alone for the same time, plus the
    ε = 0 arm trained for the same number of steps as translate's ε = 0.1 arm."""
    ours, peer = group[0], group[-1]
    bleu_gap = ours.test["bleu"] - peer.test["bleu"]
    step_ratio = ours.steps / peer.steps
    return (
        f"**Peer at equal GPU time (run v4: each system alone on the GPU).** In {fmt(ours.budget_s, 0)} s of training "
        f"loop each, translate's Transformer-base ({ours.norm}, HF initialisation, ε = {ours.eps}) trained "
        f"{ours.steps} steps and the Hugging Face MarianMTModel peer ({peer.norm}, ε = {peer.eps}) {peer.steps}. "
        f"Their best checkpoints (lowest dev NLL: step {ours.best['step']} and step {peer.best['step']}) score "
        f"test BLEU {ours.test['bleu']:.2f} (chrF {ours.test['chrf']:.2f}) and {peer.test['bleu']:.2f} "
        f"(chrF {peer.test['chrf']:.2f}): {bleu_gap:+.2f} BLEU for translate at equal GPU time, with "
        f"{step_ratio:.2f}× the peer's steps. The two learned alike per step (dev NLL at equal steps, translate vs peer: {nll_trace(group)}), "
        f"and in these real training loops they also ran at about the same speed (median "
        f"{fmt_int(median_tokens_per_s(ours.train))} vs {fmt_int(median_tokens_per_s(peer.train))} target "
        f"tokens/s), unlike the isolated benchmark: see the reading below and docs/PERFORMANCE.md. translate with "
        f"ε = {same_steps.eps}, trained for the same {same_steps.steps} steps: test BLEU "
        f"{same_steps.test['bleu']:.2f}. Both runs are short of the ~20 minutes the issue asks for (device time).")


def equal_time_bullet(group: list[System], same_steps: System, bench: Bench) -> str:
    """Reading: what v4's equal-GPU-time comparison shows, and why the benchmark ratio did not carry over."""
    ours, peer = group[0], group[-1]
    alone, alone_peer = bench.rates["translate"], bench.rates["hf_marian"]
    gap = ours.test["bleu"] - peer.test["bleu"]
    verdict = ("translate ahead" if gap > 0 else "the peer ahead") if abs(gap) >= 0.5 else "about level"
    return (
        f"- **Equal GPU time (v4).** Each alone on the GPU for {fmt(ours.budget_s, 0)} s of training loop: "
        f"translate {ours.steps} steps, best dev NLL {ours.best['nll']:.3f} (step {ours.best['step']}), test BLEU "
        f"{ours.test['bleu']:.2f}; the peer {peer.steps} steps, best dev NLL {peer.best['nll']:.3f} (step "
        f"{peer.best['step']}), test BLEU {peer.test['bleu']:.2f}: {verdict} (one seed each; {gap:+.2f} BLEU). "
        f"The benchmark's ratio (`{bench.path.as_posix()}`: {fmt_int(alone)} vs {fmt_int(alone_peer)} target "
        f"tokens/s, {alone / alone_peer:.2f}×, 60 batches, no attention or activation dropout) did not carry "
        f"over to these loops: the medians of the logged intervals were {fmt_int(median_tokens_per_s(ours.train))} "
        f"vs {fmt_int(median_tokens_per_s(peer.train))}. translate's loop also spends time in its validations "
        f"(dev NLL over {ours.valid[0]['tokens']:,} dev target tokens and greedy dev BLEU on the first "
        f"{ours.dev_bleu_sentences} dev sentences, every {ours.eval_every} steps); the "
        f"peer validates dev NLL only ({peer_eval_seconds(peer)} s of its loop). The step "
        f"counts say the rest: {ours.steps} vs {peer.steps}. Where the time goes is in docs/PERFORMANCE.md."
        + end_of_run_note(ours, same_steps, peer))


def end_of_run_note(ours: System, same_steps: System, peer: System) -> str:
    """Whether translate's end-of-run validation came out worse than its periodic best (then its best
    checkpoint is older than the peer's), and how fast dev NLL was still falling before that."""
    text = ""
    if all(g.valid[-1]["nll"] > g.best["nll"] for g in (ours, same_steps)):
        text += (f" translate's end-of-run validation (step {ours.valid[-1]['step']}) was worse than the one at "
                 f"step {ours.best['step']} in both arms (dev NLL {ours.valid[-1]['nll']:.3f} / "
                 f"{same_steps.valid[-1]['nll']:.3f} vs {ours.best['nll']:.3f} / {same_steps.best['nll']:.3f}), "
                 f"so its best checkpoint is {ours.steps - ours.best['step']} steps older than its last, while the "
                 f"peer's best is its last (step {peer.best['step']}); not explained here.")
    periodic = [r for r in ours.valid if r["step"] <= ours.best["step"]]
    if len(periodic) >= 2:
        a, b = periodic[-2], periodic[-1]
        text += (f" Dev NLL was still falling fast ({a['nll']:.2f} → {b['nll']:.2f} from step {a['step']} to "
                 f"{b['step']}): these models are far from trained, and ~20-minute runs would end much further on.")
    return text


def peer_eval_seconds(peer: System) -> str:
    return DASH if peer.eval_seconds is None else f"{peer.eval_seconds:.1f}"
