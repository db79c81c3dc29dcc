"""`translate train`: the training loop, readable top to bottom.

Setup (distributed, run directory, data, model, optimizer, resume), then per step:
lr = lr_at(step) → forward under autocast → loss sums → backward → unscale → clip → finite check →
optimizer step → zero_grad → log → periodic validation (with the collapse check) and checkpoints.
What is logged and why: docs/DIAGNOSTICS.md.

With `distill.teacher` set, the loss is word-level knowledge distillation from that teacher
(translate/distill.py): the teacher's spm.model becomes the student's, and each step also runs the
teacher on the batch; the logs add ce, kd_kl, kd_term and temperature, while nll stays the gold NLL.

Exact resume: the data order is a pure function of (seed, epoch), the position inside the epoch is
saved, and dropout randomness is re-seeded from (seed, step, rank) at every step (as fairseq does),
so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from translate.batching import Batch, BatchStream, collate_corpus, shard, teacher_forcing_batches
from translate.calibration import bin_sums, from_bin_sums
from translate.checkpoint import CheckpointWriter, load_checkpoint, model_shape_mismatch, prune_numbered
from translate.config import BestMetric, Config, Precision, TemperatureSchedule, config_to_dict, config_to_yaml
from translate.data import PreparedData, TokenizedCorpus, prepare, target_unigram_entropy
from translate.distill import (linear_distillation_loss, load_teacher, student_config, teacher_hidden, temperature_at,
                               training_progress)
from translate.errors import UserError
from translate.collapse import collapse_message, collapse_signs, hypothesis_statistics
from translate.guards import TrainingStopped, check_divergence, handle_bad_step
from translate.loss import LossSums, linear_label_smoothed_cross_entropy
from translate.metrics import STATISTICS, Interval, RunLogger, format_perplexity, format_record
from translate.model import Transformer
from translate.runtime import (Distributed, StopSignals, barrier, check_run_dir, compile_layers,
                               create_run_dir, record_resumed_config, setup_distributed)
from translate.schedule import lr_at
from translate.tokenizer import PAD_ID, Tokenizer

@dataclass
class TrainState:
    """Everything besides the tensors that a checkpoint must carry to resume exactly."""

    step: int = 0  # optimizer steps taken (skipped steps not counted)
    epoch: int = 0
    position: int = 0  # batches of this rank's share of `epoch` already consumed
    skipped_steps: int = 0  # non-finite steps skipped, in total
    consecutive_bad: int = 0
    best: dict = field(default_factory=dict)  # {"nll": ..., "bleu": ..., "step": ...}
    best_train_nll: float = math.inf  # lowest training NLL of a log interval (divergence check)
    rising_intervals: int = 0  # log intervals in a row whose NLL counted as diverging (see guards.divergence_sign)
    train_seconds: float = 0.0


def train(cfg: Config, *, resume: bool = False, overwrite: bool = False) -> int:
    log = RunLogger(cfg.run_dir, enabled=int(os.environ.get("RANK", "0")) == 0, tensorboard=cfg.train.tensorboard)
    try:
        return _train(cfg, log, resume=resume, overwrite=overwrite)
    except UserError as e:  # the CLI prints it; train.log keeps it too (once the run directory exists)
        log.to_file(f"error: {e}")
        raise
    finally:
        log.close()


def _train(cfg: Config, log: RunLogger, *, resume: bool, overwrite: bool) -> int:
    # 1. Processes and devices; the run directory is checked now but created only once the data is
    #    ready, so a data error leaves nothing behind.
    env = setup_distributed(cfg)
    teacher = None
    if cfg.distill.teacher:  # its vocabulary becomes the student's: checked before anything is written
        teacher = load_teacher(cfg.distill.teacher, device=env.device)
        cfg = student_config(cfg, teacher)
    run_dir = cfg.run_dir
    if env.is_main:
        check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    precision = cfg.train.precision if env.device.type == "cuda" else Precision.FP32
    log.line(config_to_yaml(cfg).rstrip())

    # 2. Data: the main process prepares (or reuses) the cache, the others then read it.
    data = prepare(cfg, verbose=env.is_main, say=log.line) if env.is_main else None
    if env.is_main:
        create_run_dir(run_dir, cfg, data.tokenizer_file, overwrite=overwrite, resume=resume)
        log.open()
    barrier(env)
    if not env.is_main:
        data = prepare(cfg, verbose=False)
    tokenizer = Tokenizer(data.tokenizer_file)
    if data.valid is not None:
        _report_long_dev_pairs(data.valid, cfg, log)
    unigram_entropy = target_unigram_entropy(data.train, vocab_size=tokenizer.vocab_size)
    if cfg.train.divergence_nats:
        log.line(f"divergence check: training targets' unigram entropy {unigram_entropy:.3f} nats; a training NLL "
                 f"no lower after step {cfg.optim.warmup_steps + cfg.train.divergence_grace_steps} stops the run")

    # 3. Model, optimizer, loss scaler; then the saved state when resuming.
    torch.manual_seed(cfg.train.seed)
    model = Transformer(cfg.model, vocab_size=tokenizer.vocab_size, pad_id=PAD_ID).to(env.device)
    if teacher is not None:
        k = cfg.distill
        schedule = (f"{k.temperature} to {k.temperature_end} (linear)"
                    if k.temperature_schedule == TemperatureSchedule.LINEAR else f"{k.temperature}")
        n_teacher = sum(p.numel() for p in teacher.model.parameters())
        log.line(f"distilling from {teacher.path} (step {teacher.step}, {n_teacher:,} parameters): alpha {k.alpha}, "
                 f"temperature {schedule}; vocabulary {teacher.tokenizer_file}")
    optimizer = _build_optimizer(model, cfg, env.device)
    scaler = torch.amp.GradScaler(env.device.type, enabled=precision == Precision.FP16)
    state = TrainState()
    if resume:
        state = _restore(run_dir / "checkpoint_last.pt", cfg, model, optimizer, scaler,
                         vocab_size=tokenizer.vocab_size)
        log.line(f"resumed from {run_dir / 'checkpoint_last.pt'} at step {state.step} "
                 f"(epoch {state.epoch}, batch {state.position})")
        changed = record_resumed_config(run_dir, cfg, step=state.step) if env.is_main else ""
        if changed:
            log.line(changed)
    log.line(f"model: {sum(p.numel() for p in model.parameters()):,} parameters; device {env.device}, "
             f"precision {precision.value}, world size {env.world_size}")
    if cfg.train.compile:
        compile_layers(model)
    train_model = model
    if env.world_size > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16 if precision == Precision.BF16 else torch.float16)
                if precision != Precision.FP32 else nullcontext())

    # 4. The loop.
    stop = StopSignals()
    batches = _EpochBatches(data.train, cfg, env)
    bar = tqdm(total=cfg.train.max_steps or None, initial=state.step, disable=not (env.is_main and sys.stdout.isatty()),
               unit="step", dynamic_ncols=True)
    interval = Interval(extra=("ce", "kd_kl", "kd_term") if teacher is not None else (), statistics=loss_statistics(cfg))
    start_time = time.perf_counter() - state.train_seconds
    saver = _Saver(run_dir, model, optimizer, scaler, cfg, tokenizer, env, start_time)
    exit_code = 0
    try:
        while True:
            reason = _stop_reason(cfg, state, batches, start_time, stop, env)
            if reason:
                log.line(f"stopping at step {state.step}: {reason}")
                exit_code = stop.exit_code
                break
            lr = lr_at(state.step, cfg.optim, d_model=cfg.model.d_model)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(_step_seed(cfg.train.seed, state.step, env.rank))

            step_batches = [batches.next(state) for _ in range(cfg.train.update_freq)]
            n_tokens = _global_token_count(step_batches, env)
            kd = None
            if teacher is not None:
                progress = training_progress(step=state.step, elapsed=time.perf_counter() - start_time, train=cfg.train)
                kd = KDStep(teacher.model, alpha=cfg.distill.alpha, temperature=temperature_at(progress, cfg.distill))
            sums, peak_logit = _forward_backward(train_model, model.output_proj.weight, step_batches, cfg, env, autocast,
                                                 scaler, n_tokens, kd)
            log_step = (state.step + 1) % cfg.train.log_every == 0
            before = _weight_vector(model) if log_step and cfg.train.statistics else None

            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_norm or math.inf)
            loss_ok, grads_ok = torch.stack([sums[0].isfinite(), grad_norm.isfinite()]).tolist()  # one host sync
            if loss_ok and grads_ok:
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.consecutive_bad = 0
                interval.add(sums, n_tokens, grad_norm, peak_logit)
            else:
                optimizer.zero_grad(set_to_none=True)
                handle_bad_step(state, cfg, log, lr=lr, grad_norm=grad_norm, loss_ok=loss_ok, scaler=scaler,
                                 on_stop=lambda: saver.save(state, "checkpoint_last.pt", wait=True))
                continue
            bar.update(1)

            if state.step % cfg.train.log_every == 0:
                record = interval.report(state, lr=lr, elapsed=time.perf_counter() - start_time, world_size=env.world_size,
                                         confidence_penalty=cfg.train.confidence_penalty,
                                         weights=_weight_statistics(model, before) if before is not None else None)
                if kd is not None:
                    record["temperature"] = kd.temperature
                log.metrics(record)
                log.line(format_record(record))
                bar.set_postfix({"loss": f"{record['loss']:.3f}", "ppl": record["ppl"], "lr": f"{lr:.2e}",
                                 "tokens/s": f"{record['tgt_tokens_per_s']:.0f}"})
                check_divergence(state, record["nll"], cfg, unigram_entropy=unigram_entropy, lr=lr)
            if state.step % cfg.train.eval_every == 0:
                started = time.perf_counter()
                _validate_and_save(model, data, tokenizer, cfg, env, state, log, saver, autocast)
                interval.exclude(time.perf_counter() - started)
            elif cfg.train.save_every and state.step % cfg.train.save_every == 0:
                saver.save(state, f"checkpoint_step{state.step}.pt", prune=True)
    finally:
        bar.close()
        stop.restore()
        batches.stream.close()
        saver.writer.join()  # on an error too: no checkpoint is left half written when train() exits

    if stop.signal_name:  # asked to stop: save promptly, no validation
        saver.save(state, "checkpoint_last.pt")
    elif state.step % cfg.train.eval_every != 0 or state.step == 0:  # (else the loop just validated)
        _validate_and_save(model, data, tokenizer, cfg, env, state, log, saver, autocast)
    saver.writer.wait()  # every checkpoint on disk before the run reports done
    log.line(f"done: {state.step} steps, {state.skipped_steps} skipped, best {state.best}; "
             f"checkpoints in {run_dir} (checkpoint_best.pt, checkpoint_last.pt)")
    if env.world_size > 1:
        dist.destroy_process_group()
    return exit_code


# ---------------------------------------------------------------------------------------------
# One step


@dataclass(frozen=True)
class KDStep:
    """What one distillation step needs: the teacher and this step's settings."""

    teacher: Transformer
    alpha: float
    temperature: float


def batch_loss(model, output_weight: torch.Tensor, batch: Batch, *, epsilon: float, autocast,
               compiled: bool = False, kd: KDStep | None = None, confidence_penalty: float = 0.0,
               statistics: bool = False, rows: bool = False):
    """Teacher-forced loss sums of one batch (on the model's device): `LossSums`, or with `kd` the
    distillation's `DistillSums`.

    The model returns decoder states; only the non-pad ones (batch.target_index) go through the
    output projection and the loss, fused, so the (tokens × vocabulary) float32 logits are never
    held whole. `model` may be the DDP wrapper; `output_weight` is the projection matrix.
    compiled (train.compile): the loss's elementwise passes through torch.compile.
    confidence_penalty, statistics, rows: as `loss.linear_label_smoothed_cross_entropy`'s.
    """
    with autocast:
        hidden = model(batch.src, batch.tgt_in, batch.src == PAD_ID, return_hidden=True)  # (B, T, D)
    hidden = hidden.flatten(0, 1).index_select(0, batch.target_index)  # (N, D) non-pad targets only
    compute_dtype = autocast.fast_dtype if isinstance(autocast, torch.autocast) else None  # matmuls as autocast's
    if kd is None:
        return linear_label_smoothed_cross_entropy(hidden, output_weight, batch.targets, epsilon=epsilon,
                                                   compute_dtype=compute_dtype, compiled=compiled,
                                                   confidence_penalty=confidence_penalty, statistics=statistics,
                                                   rows=rows)
    soft_hidden = teacher_hidden(kd.teacher, batch, autocast=autocast)
    return linear_distillation_loss(hidden, output_weight, soft_hidden, kd.teacher.output_proj.weight, batch.targets,
                                    epsilon=epsilon, alpha=kd.alpha, temperature=kd.temperature,
                                    compute_dtype=compute_dtype, compiled=compiled)


def loss_statistics(cfg: Config) -> bool:
    """Whether the training loss returns the statistics (metrics.STATISTICS): with train.statistics, or
    a confidence penalty (its logged part needs Σ H); not with distillation, whose loss has none."""
    return (cfg.train.statistics or bool(cfg.train.confidence_penalty)) and not cfg.distill.teacher


def _forward_backward(train_model, output_weight: torch.Tensor, step_batches: list[Batch], cfg: Config,
                      env: Distributed, autocast, scaler, n_tokens: int,
                      kd: KDStep | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Accumulate gradients over the step's batches; returns, on device, the step's sums (loss_sum,
    nll_sum, n_correct; with `kd` then ce_sum, kd_kl_sum, kd_term_sum; with `loss_statistics` then
    metrics.STATISTICS's sums) and the largest logit (or None).

    Gradients are of the loss summed over the step's target tokens on all ranks, divided by that
    token count: the world-size factor undoes DDP's averaging over ranks.
    """
    denominator = n_tokens / env.world_size
    statistics = loss_statistics(cfg)
    totals = torch.zeros(3 + 3 * (kd is not None) + len(STATISTICS) * statistics, device=env.device)
    peak = torch.full((), -math.inf, device=env.device) if statistics else None
    for i, batch in enumerate(step_batches):
        batch = batch.to(env.device)
        last = i == len(step_batches) - 1
        sync = nullcontext() if last or env.world_size == 1 else train_model.no_sync()
        with sync:
            sums = batch_loss(train_model, output_weight, batch, epsilon=cfg.train.label_smoothing, autocast=autocast,
                              compiled=cfg.train.compile, kd=kd, confidence_penalty=cfg.train.confidence_penalty,
                              statistics=statistics)
            scaler.scale(sums.loss / denominator).backward()
        parts = [sums.loss, sums.nll, sums.n_correct.float()] + ([sums.ce, sums.kl, sums.kd_term] if kd else [])
        if statistics:
            parts += [sums.max_logit, sums.entropy, sums.confidence, sums.p_target]
            peak = torch.maximum(peak, sums.peak_logit)
        totals += torch.stack(parts).detach()
    return totals, peak


def _weight_vector(model: torch.nn.Module) -> torch.Tensor:
    """A copy of all parameters as one flat vector: taken only before a step that will be logged."""
    return torch.nn.utils.parameters_to_vector(p.detach() for p in model.parameters())


def _weight_statistics(model: Transformer, before: torch.Tensor) -> dict[str, torch.Tensor]:
    """The output projection's norm and the whole model's update ratio ‖Δw‖ / ‖w‖ of the step just
    taken (`before`: the weights before it), as device tensors, read when the record is written."""
    after = _weight_vector(model)
    return {"output_weight_norm": torch.linalg.vector_norm(model.output_proj.weight.detach()),
            "update_ratio": torch.linalg.vector_norm(after - before) / torch.linalg.vector_norm(before)}


def _global_token_count(step_batches: list[Batch], env: Distributed) -> int:
    n = sum(b.n_tgt_tokens for b in step_batches)
    if env.world_size > 1:
        t = torch.tensor([n], device=env.device, dtype=torch.float64)
        dist.all_reduce(t)
        n = int(t.item())
    return n


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


# ---------------------------------------------------------------------------------------------
# Validation, checkpoints, stopping


def dev_batches(corpus: TokenizedCorpus, cfg: Config) -> list[np.ndarray]:
    """The dev loss's batches: the pairs that fit model.max_positions and train.max_tokens
    (`batching.teacher_forcing_batches`); dev BLEU truncates the longer ones instead."""
    return teacher_forcing_batches(corpus.src_lengths, corpus.tgt_lengths, max_positions=cfg.model.max_positions,
                                   max_tokens=cfg.train.max_tokens)


@torch.no_grad()
def validate(model: Transformer, corpus: TokenizedCorpus, cfg: Config, env: Distributed, autocast) -> dict:
    """Teacher-forced dev loss, NLL, perplexity, token accuracy, mean entropy and confidence, and ECE
    (15 bins, translate/calibration.py) over all non-pad target tokens of the pairs that fit (`dev_batches`)."""
    was_training = model.training
    model.eval()
    batches = dev_batches(corpus, cfg)
    totals = torch.zeros(6, dtype=torch.float64, device=env.device)
    bins = torch.zeros(3, 15, dtype=torch.float64, device=env.device)
    for idx in shard(batches, rank=env.rank, world_size=1 if len(batches) < env.world_size else env.world_size):
        batch = collate_corpus(corpus, idx).to(env.device)
        sums = batch_loss(model, model.output_proj.weight, batch, epsilon=cfg.train.label_smoothing, autocast=autocast,
                          compiled=cfg.train.compile, confidence_penalty=cfg.train.confidence_penalty, rows=True)
        totals += torch.stack([sums.loss, sums.nll, sums.n_tokens, sums.n_correct, sums.entropy,
                               sums.confidence]).double()
        bins += bin_sums(sums.row_confidence, sums.row_correct, n_bins=bins.shape[1])
    if env.world_size > 1 and len(batches) >= env.world_size:
        dist.all_reduce(totals)
        dist.all_reduce(bins)
    model.train(was_training)
    loss, nll, n_tokens, n_correct, entropy, confidence = totals.tolist()
    return {"loss": loss / n_tokens, "nll": nll / n_tokens, "ppl": format_perplexity(nll / n_tokens),
            "accuracy": n_correct / n_tokens, "tokens": int(n_tokens), "entropy": entropy / n_tokens,
            "confidence": confidence / n_tokens, "ece": from_bin_sums(bins).summary()["ece"]}


def _report_long_dev_pairs(corpus: TokenizedCorpus, cfg: Config, log) -> None:
    """Say once, at startup, how many dev pairs the dev loss leaves out and how many dev BLEU sources
    are truncated (the cache holds the dev pairs in file order, as dev BLEU reads them)."""
    left_out = len(corpus) - sum(len(idx) for idx in dev_batches(corpus, cfg))
    if left_out:
        limit = min(cfg.model.max_positions, cfg.train.max_tokens) - 1
        what = (f"{left_out} of {len(corpus)} dev pairs have a side longer than {limit} tokens "
                f"(model.max_positions {cfg.model.max_positions}, train.max_tokens {cfg.train.max_tokens})")
        if left_out == len(corpus):
            raise UserError(f"{what}: nothing left to validate on; raise those limits or use another data.valid")
        log.line(f"warning: {what}; they are left out of the dev loss and perplexity")
    bleu_sources = corpus.src_lengths[:cfg.eval.dev_bleu_sentences]
    truncated = int((bleu_sources > cfg.model.max_positions - 1).sum())
    if truncated:
        log.line(f"warning: {truncated} of the {len(bleu_sources)} dev BLEU sources are longer than "
                 f"{cfg.model.max_positions - 1} tokens (model.max_positions - 1); they are truncated when decoded")


def _validate_and_save(model, data: PreparedData, tokenizer, cfg: Config, env: Distributed, state: TrainState, log,
                       saver: _Saver, autocast) -> None:
    record = {"kind": "valid", "step": state.step}
    if data.valid is not None:
        record.update(validate(model, data.valid, cfg, env, autocast))
        if cfg.eval.dev_bleu_sentences and env.is_main:
            record.update(_dev_translation_statistics(model, tokenizer, cfg, env))
    record["elapsed_s"] = time.perf_counter() - saver.start_time
    # The collapse rule (translate/collapse.py); the main process, which decoded, decides for all.
    signs = collapse_signs(record) if env.is_main else []
    if signs:
        record["collapse"] = signs
    barrier(env)
    log.metrics(record)
    log.line("valid " + format_record({k: v for k, v in record.items() if k != "collapse"}))
    if _agreed(bool(signs), env):
        message = collapse_message(signs, step=state.step)
        if cfg.train.stop_on_collapse:
            raise TrainingStopped(f"{message}. Stopped (train.stop_on_collapse); checkpoint_last.pt keeps the state "
                                  "saved before this validation")
        log.line(f"warning: {message} (train.stop_on_collapse: true would stop here)")
    if state.rising_intervals:
        # The training loss looks diverged (see guards.divergence_sign): keep the last checkpoint from
        # before that rather than overwrite it with what may be garbage.
        log.line(f"step {state.step}: training NLL diverging ({state.rising_intervals} log intervals); "
                 "checkpoint_last.pt not overwritten")
        return
    improved = _is_better(record, state.best, cfg.train.best_metric)
    if improved:
        state.best = {k: record[k] for k in ("nll", "bleu", "step") if k in record}
    numbered = bool(cfg.train.save_every) and state.step % cfg.train.save_every == 0
    copies = tuple(name for name, wanted in (("checkpoint_best.pt", improved),
                                             (f"checkpoint_step{state.step}.pt", numbered)) if wanted)
    saver.save(state, "checkpoint_last.pt", copies=copies, prune=numbered)


def _dev_translation_statistics(model: Transformer, tokenizer: Tokenizer, cfg: Config, env: Distributed) -> dict:
    """Dev BLEU and the collapse statistics of the same greedy (eval.dev_bleu_beam) translations."""
    from translate.evaluate import dev_translations  # decoding lives with evaluation

    dev = dev_translations(model, tokenizer, cfg, device=env.device)
    return {"bleu": dev.bleu, "length_ratio": dev.length_ratio,
            **hypothesis_statistics(dev.sources, dev.hypotheses, tokenizer.encode(dev.hypotheses))}


def _agreed(flag: bool, env: Distributed) -> bool:
    """The main process's `flag`, on every rank."""
    if env.world_size == 1:
        return flag
    value = torch.tensor([float(flag)], device=env.device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def _is_better(record: dict, best: dict, metric: BestMetric) -> bool:
    if metric == BestMetric.BLEU and "bleu" in record:
        return "bleu" not in best or record["bleu"] > best["bleu"]
    if "nll" not in record:
        return True  # no validation set: the latest is the best we know
    return "nll" not in best or record["nll"] < best["nll"]


@dataclass
class _Saver:
    """The run's checkpoints, written by the main process in the background (checkpoint.CheckpointWriter)."""

    run_dir: Path
    model: Transformer
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    cfg: Config
    tokenizer: Tokenizer
    env: Distributed
    start_time: float
    writer: CheckpointWriter = field(default_factory=CheckpointWriter)

    def save(self, state: TrainState, name: str, *, copies: tuple[str, ...] = (), prune: bool = False,
             wait: bool = False) -> None:
        """Write `name` and then its `copies` (file names in the run directory); prune: then delete the
        numbered checkpoints beyond train.keep_last; wait: return only once all is on disk (a run that
        is about to stop with an error must not report a checkpoint whose write failed)."""
        if not self.env.is_main:
            return
        state.train_seconds = time.perf_counter() - self.start_time
        checkpoint = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": {k: v for k, v in vars(state).items()},
            "step": state.step,
            "config": config_to_dict(self.cfg),
            "tokenizer": "spm.model",
            "vocab_size": self.tokenizer.vocab_size,
        }
        after = (lambda: prune_numbered(self.run_dir, self.cfg.train.keep_last)) if prune else None
        self.writer.write(checkpoint, self.run_dir / name, copies=tuple(self.run_dir / c for c in copies), after=after)
        if wait:
            self.writer.wait()


def _restore(path: Path, cfg: Config, model, optimizer, scaler, *, vocab_size: int) -> TrainState:
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint to resume from ({path} does not exist); "
                        "start without --resume (or with --overwrite)")
    saved = load_checkpoint(path)
    mismatch = model_shape_mismatch(saved["config"]["model"], config_to_dict(cfg)["model"])
    if mismatch:
        raise UserError(f"cannot resume from {path}: {mismatch}. Resume with the run's own config "
                        f"({path.parent / 'config.yaml'}) or start a new run directory")
    if saved["vocab_size"] != vocab_size:
        raise UserError(f"cannot resume from {path}: its vocabulary has {saved['vocab_size']} pieces, the "
                        f"prepared data's tokenizer {vocab_size}; the data settings changed since the run began")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scaler.load_state_dict(saved["scaler"])
    return TrainState(**saved["state"])


def _stop_reason(cfg: Config, state: TrainState, batches: "_EpochBatches", start_time: float, stop: "StopSignals",
                 env: Distributed) -> str:
    t = cfg.train
    signalled = stop.signal_name is not None
    out_of_time = bool(t.max_time) and time.perf_counter() - start_time >= t.max_time
    if env.world_size > 1:  # every rank must stop at the same step, or DDP waits forever
        flags = torch.tensor([float(signalled), float(out_of_time)], device=env.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        signalled, out_of_time = bool(flags[0]), bool(flags[1])
    if signalled:
        stop.signal_name = stop.signal_name or "a stop signal on another rank"
        return f"received {stop.signal_name}; saving checkpoint_last.pt"
    if t.max_steps and state.step >= t.max_steps:
        return f"reached train.max_steps ({t.max_steps})"
    if t.max_epochs and batches.epoch_of(state) >= t.max_epochs:
        return f"reached train.max_epochs ({t.max_epochs})"
    if out_of_time:
        return f"reached train.max_time ({t.max_time:g} s)"
    return ""


class _EpochBatches:
    """The training stream seen through the run's state: `next` advances `state.epoch/position`."""

    def __init__(self, corpus: TokenizedCorpus, cfg: Config, env: Distributed):
        self.stream = BatchStream(corpus, max_tokens=cfg.train.max_tokens, seed=cfg.train.seed, rank=env.rank,
                                  world_size=env.world_size, pin_memory=env.device.type == "cuda")
        if self.stream.count(0) == 0:
            raise UserError(f"the training corpus gives fewer batches than the {env.world_size} processes; "
                            "lower train.max_tokens")

    def epoch_of(self, state: TrainState) -> int:
        """The epoch the next batch comes from (a finished epoch counts as done)."""
        return state.epoch + (state.position >= self.stream.count(state.epoch))

    def next(self, state: TrainState) -> Batch:
        if state.position >= self.stream.count(state.epoch):
            state.epoch, state.position = state.epoch + 1, 0
        batch = self.stream.get(state.epoch, state.position)
        state.position += 1
        return batch


# ---------------------------------------------------------------------------------------------
# Setup


def _build_optimizer(model: torch.nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; weight decay only on matrices of linear layers (not norms, biases or embeddings), plus
    optim.output_weight_decay on the output projection (a third group, only when set: older
    checkpoints' optimizer states have two)."""
    decay, no_decay = [], []
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and id(p) not in embedding_ids else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optim.output_weight_decay:  # its own group, added to the decay it had (tied: the embedding's none)
        output = model.output_proj.weight
        group = next(g for g in groups if any(p is output for p in g["params"]))
        group["params"] = [p for p in group["params"] if p is not output]
        groups.append({"params": [output], "weight_decay": group["weight_decay"] + cfg.optim.output_weight_decay})
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
                             fused=device.type == "cuda")
