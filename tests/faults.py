"""The fault battery: functions that break a tiny CPU training run on purpose and check the damage.

Shared by tests/test_faults.py (few trials, in CI) and scripts/fault_battery.py (`--full`: more).
Each function takes a fresh working directory, a trial count and a seed, and returns a `Result`:
`survived` counts trials that ended as promised (a clean finish, or one clear message and exit 2),
`data_lost` counts trials that lost or silently corrupted work (an unreadable or changed checkpoint,
final weights that differ from an uninterrupted run, a wrong output). Faults are injected from
outside (signals, resource limits, patched functions, hostile files), never by a production flag.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import lzma
import math
import multiprocessing
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import yaml
from tqdm import tqdm

import translate.guards as guards
import translate.train as train_module
from translate.checkpoint import load_checkpoint
from translate.cli import main
from translate.config import config_from_dict, load_config
from translate.errors import UserError
from translate.schedule import lr_at

from conftest import PAIRS, REPO, tiny_config, write_config, write_lines

CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass
class Result:
    fault: str
    trials: int = 0
    survived: int = 0
    data_lost: int = 0
    failures: list[str] = field(default_factory=list)

    def record(self, ok: bool, lost: bool = False, why: str = "") -> None:
        self.trials += 1
        self.survived += ok
        self.data_lost += lost
        if (not ok or lost) and why:
            self.failures.append(why)

    @property
    def ok(self) -> bool:
        return self.trials > 0 and self.survived == self.trials and self.data_lost == 0


# ---------------------------------------------------------------------------------------------
# Helpers


def tiny(workdir: Path, **train) -> dict:
    """The tests' tiny config, without dev BLEU (decoding is not what these faults are about)."""
    raw = tiny_config(workdir, eval={"dev_bleu_sentences": 0})
    raw["train"].update(train)
    return raw


def cli(*argv) -> tuple[int, str, str]:
    """`translate ARGV` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_clear_message(code: int, err: str, *fragments: str) -> bool:
    """The error contract: exit code 2, a `translate X: error:` message, no traceback, names the file."""
    return code == 2 and "error:" in err and "Traceback" not in err and all(f in err for f in fragments)


def train_command(config: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "translate", "train", "--config", str(config), *flags]


def weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_metrics(run_dir: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def leftover_temp_files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.glob(".*.tmp"))


@contextlib.contextmanager
def gradient_fault(bad_calls: dict[int, float]):
    """Multiply one parameter's gradient by `value` on the given (0-based) backward passes."""
    real = train_module.Transformer
    calls = {"n": 0}

    def build(*args, **kwargs):
        model = real(*args, **kwargs)

        def hook(grad):
            value = bad_calls.get(calls["n"])
            calls["n"] += 1
            return grad * value if value is not None else grad

        next(model.parameters()).register_hook(hook)
        return model

    with mock.patch.object(train_module, "Transformer", build):
        yield


@contextlib.contextmanager
def loss_fault(bad_calls: dict[int, float]):
    """Multiply the logits by `value` on the given (0-based) training loss calls (a real NaN / Inf /
    garbage in the graph, not a flag)."""
    real = train_module.linear_label_smoothed_cross_entropy
    calls = {"n": 0}

    def poisoned(hidden, weight, target, **kwargs):
        if torch.is_grad_enabled():
            value = bad_calls.get(calls["n"])
            calls["n"] += 1
            if value is not None:
                hidden = hidden * value  # the logits, linear in hidden, scale with it
        return real(hidden, weight, target, **kwargs)

    with mock.patch.object(train_module, "linear_label_smoothed_cross_entropy", poisoned):
        yield


def _forked_translate(*argv) -> multiprocessing.Process:
    """Start `translate ARGV` (output discarded) in a process forked from a server that imported
    torch and torch._dynamo (which building the optimizer imports lazily) once: ~0.3 s to the first
    step instead of ~3.5 s for a fresh interpreter. `.kill()` sends it SIGKILL."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["faults", "torch._dynamo"])  # only read when the server starts
    proc = context.Process(target=_run_translate, args=([str(a) for a in argv],), daemon=True)
    proc.start()
    return proc


def _run_translate(argv: list[str]) -> None:
    torch.set_num_threads(1)  # as CHILD_ENV (OMP_NUM_THREADS=1) gives subprocesses
    # tqdm's default lock is a multiprocessing semaphore that a SIGKILLed process leaves to the
    # resource tracker (a "leaked semaphore" warning at exit); a thread lock does for one process.
    tqdm.set_lock(threading.RLock())
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), contextlib.redirect_stderr(devnull):
        code = main(argv)
    sys.exit(code)


def run_quietly(fn, *args, **kwargs):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            return fn(*args, **kwargs), out.getvalue()
        except UserError as e:
            return e, out.getvalue()


# ---------------------------------------------------------------------------------------------
# Kills and signals


KILL_MOMENTS = ["startup", "mid-step", "checkpoint write", "after validation"]


def kill9(workdir: Path, *, kills: int, seed: int) -> Result:
    """SIGKILL one `translate train` run at `kills` seeded moments (during startup, mid-step, while a
    checkpoint file is being written, just after a validation), restarting it after each as a user
    would; after every kill checkpoint_last.pt must load, at least one kill must land inside a
    checkpoint write (its temporary file left behind), and the final weights must equal an
    uninterrupted run's.

    Each run is `translate.cli.main(["train", ...])` in a process forked from a server that imported
    torch once (`_forked_translate`): a kill then costs a fraction of a second instead of an
    interpreter start and torch's imports (~3 s), so CI affords ten of them."""
    result = Result("kill -9 + resume")
    rng = random.Random(seed)
    # A kill lets the run advance ~3 steps at most, so this leaves steps for every kill to interrupt.
    common = dict(max_steps=3 * kills, eval_every=1, save_every=1, keep_last=2, log_every=1)
    reference = workdir / "reference"
    config = write_config(workdir / "reference.yaml", tiny(workdir, out_dir=str(reference), **common))
    straight = _forked_translate("train", "--config", config)
    straight.join()
    assert straight.exitcode == 0, f"the uninterrupted reference run failed with exit {straight.exitcode}"
    run_dir = workdir / "killed"
    config = write_config(workdir / "killed.yaml", tiny(workdir, out_dir=str(run_dir), **common))
    moments = [KILL_MOMENTS[i % len(KILL_MOMENTS)] for i in range(kills)]
    rng.shuffle(moments)
    inside_writes = 0
    for moment in moments:
        flags = (("--resume",) if (run_dir / "checkpoint_last.pt").exists()
                 else ("--overwrite",) if run_dir.exists() and any(run_dir.iterdir()) else ())
        launched = time.time_ns()
        before = _metrics_counts(run_dir)
        proc = _forked_translate("train", "--config", config, *flags)
        _wait_for(moment, proc, run_dir, before=before, launched=launched, rng=rng)
        finished = not proc.is_alive()
        proc.kill()
        proc.join()
        if finished and proc.exitcode != 0:
            result.record(False, why=f"{moment}: restart {flags} failed with exit {proc.exitcode}")
            continue
        inside_writes += any(p.stat().st_mtime_ns >= launched for p in run_dir.glob(".*.tmp"))
        try:
            if (run_dir / "checkpoint_last.pt").exists():
                load_checkpoint(run_dir / "checkpoint_last.pt")
            result.record(True)
        except UserError as e:
            result.record(False, lost=True, why=f"{moment}: partial checkpoint after a kill: {e}")
    if kills >= len(KILL_MOMENTS) and not inside_writes:
        result.record(False, why="no kill landed inside a checkpoint write")
    flags = ("--resume",) if (run_dir / "checkpoint_last.pt").exists() else ("--overwrite",)
    done = _forked_translate("train", "--config", config, *flags)
    done.join()
    if done.exitcode != 0:
        result.data_lost += 1
        result.failures.append(f"final restart failed with exit {done.exitcode}")
    elif not same_weights(weights(run_dir / "checkpoint_last.pt"), weights(reference / "checkpoint_last.pt")):
        result.data_lost += 1
        result.failures.append("final weights differ from the uninterrupted run")
    return result


def _wait_for(moment: str, proc, run_dir: Path, *, before: tuple[int, int], launched: int, rng: random.Random) -> None:
    """Return at the seeded kill moment (or when the process has exited)."""
    train_lines, valid_lines = before
    if moment == "startup":  # loading data, building the model, restoring the checkpoint
        proc.join(rng.uniform(0.0, 0.3))
        return
    if moment == "mid-step":  # somewhere in the next steps: forward, backward, logging, validation
        reached = lambda: _metrics_counts(run_dir)[0] > train_lines  # noqa: E731
        pause = rng.uniform(0.0, 0.05)
    elif moment == "checkpoint write":  # a .NAME.tmp written by this process exists: kill at once
        reached = lambda: any(p.stat().st_mtime_ns >= launched for p in run_dir.glob(".*.tmp"))  # noqa: E731
        pause = 0.0
    else:  # "after validation": just after the 1st-3rd next validation began its checkpoint writes
        target = valid_lines + rng.randint(1, 3)
        reached = lambda: _metrics_counts(run_dir)[1] >= target  # noqa: E731
        pause = rng.uniform(0.0, 0.02)
    deadline = time.time() + 60
    while proc.is_alive() and time.time() < deadline:
        try:
            if reached():
                break
        except FileNotFoundError:  # a temporary file renamed between listing and stat
            pass
        time.sleep(0.001)
    time.sleep(pause)


def _metrics_counts(run_dir: Path) -> tuple[int, int]:
    """(train, valid) records in the run's metrics.jsonl so far."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        return 0, 0
    text = metrics.read_text()
    return text.count('"kind": "train"'), text.count('"kind": "valid"')


def stop_signals(workdir: Path, *, trials: int, seed: int) -> Result:
    """SIGTERM → checkpoint and exit 0; SIGINT → checkpoint and exit 130; within seconds."""
    result = Result("SIGTERM / SIGINT")
    rng = random.Random(seed)
    for trial in range(trials):
        sig = (signal.SIGTERM, signal.SIGINT)[trial % 2]
        run_dir = workdir / f"run{trial}"
        config = write_config(workdir / f"c{trial}.yaml", tiny(workdir, out_dir=str(run_dir), max_steps=100000,
                                                                  eval_every=100000, log_every=1))
        proc = subprocess.Popen(train_command(config), cwd=REPO, env=CHILD_ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        metrics = run_dir / "metrics.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.3))
        sent = time.perf_counter()
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            result.record(False, why=f"{sig.name}: no exit within 30 s")
            continue
        seconds = time.perf_counter() - sent
        expected = 130 if sig == signal.SIGINT else 0
        try:
            step = load_checkpoint(run_dir / "checkpoint_last.pt")["step"]
        except UserError as e:
            result.record(False, lost=True, why=f"{sig.name}: {e}")
            continue
        ok = (proc.returncode == expected and f"received {sig.name}" in out and step >= 2
              and not leftover_temp_files(run_dir) and seconds < 15)
        result.record(ok, why=f"{sig.name}: exit {proc.returncode}, step {step}, {seconds:.1f} s, {err[-300:]}")
    return result


# ---------------------------------------------------------------------------------------------
# Full disk


def disk_full(workdir: Path, *, trials: int, seed: int) -> Result:
    """A write that fails mid-checkpoint (file size limit, or ENOSPC on any checkpoint file): one
    message and exit 2, the previous checkpoint_last.pt intact, no partial or temporary file."""
    result = Result("disk full during checkpoint")
    rng = random.Random(seed)
    raw = tiny(workdir, max_steps=4, eval_every=2, save_every=2)
    run_dir = Path(raw["train"]["out_dir"])
    run_quietly(train_module.train, config_from_dict(raw))
    last = run_dir / "checkpoint_last.pt"
    saved = last.read_bytes()
    raw["train"]["max_steps"] = 8
    config = write_config(workdir / "c.yaml", raw)

    def intact(rewritten_ok: bool) -> bool:
        """checkpoint_last.pt is the old file (or, when only a later copy failed, a complete new one),
        every checkpoint file loads, and no temporary file is left."""
        unchanged = last.read_bytes() == saved
        steps = {load_checkpoint(p)["step"] for p in run_dir.glob("checkpoint_*.pt")}
        return (unchanged or rewritten_ok) and steps <= {2, 4, 6, 8} and not leftover_temp_files(run_dir)

    for trial in range(trials):
        if trial % 2 == 0:  # the kernel refuses to grow any file past `limit` bytes (SIGXFSZ ignored)
            limit = int(len(saved) * rng.uniform(0.05, 0.95))

            def limit_file_size(limit=limit):
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

            done = subprocess.run(train_command(config, "--resume"), cwd=REPO, env=CHILD_ENV, capture_output=True,
                                  text=True, preexec_fn=limit_file_size, timeout=300)
            code, err, what = done.returncode, done.stderr, f"RLIMIT_FSIZE {limit}"
        else:  # ENOSPC from the copy that makes checkpoint_best.pt / checkpoint_step*.pt
            real_copy = shutil.copyfile

            def no_space(src, dst, **kwargs):
                if "checkpoint" in Path(dst).name:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real_copy(src, dst, **kwargs)

            with mock.patch.object(shutil, "copyfile", no_space):
                code, _, err = cli("train", "--config", config, "--resume")
            what = "ENOSPC on copy"
        # A limit small enough hits the run directory's own files (spm.model) before any checkpoint.
        ok = (one_clear_message(code, err, "cannot write checkpoint")
              or one_clear_message(code, err, "cannot set up run directory")) and len(err.strip().splitlines()) == 1
        try:
            kept = intact(rewritten_ok=trial % 2 == 1)
        except UserError:
            kept = False
        result.record(ok and kept, lost=not kept, why=f"{what}: exit {code}, intact {kept}, temp files "
                      f"{leftover_temp_files(run_dir)}: {err[-400:]}")
        last.write_bytes(saved)  # the next trial starts from the same state
    return result


def disk_full_prepare(workdir: Path, *, trials: int, seed: int) -> Result:
    """A write that fails while `translate prepare` builds the data cache (a file size limit while the
    tokenizer or the token arrays are written, or ENOSPC from a seeded array write): one message
    naming the path and data.data_dir, exit 2; nothing half-written left for a later run to trust,
    and a later prepare with room builds exactly the cache an undisturbed one does."""
    result = Result("disk full during prepare")
    rng = random.Random(seed)
    reference = workdir / "reference"
    code, _, err = cli("prepare", "--config", write_config(workdir / "reference.yaml", tiny(reference)))
    assert code == 0, err
    expected = _cache_files(reference / "data")
    tokenizer = next((reference / "data").glob("tok-*/spm.model"))
    largest_array = max(p.stat().st_size for p in (reference / "data").glob("tok-*/*/*.npy"))
    for trial in range(trials):
        data_dir = workdir / f"t{trial}" / "data"
        config = write_config(workdir / f"t{trial}.yaml", tiny(workdir / f"t{trial}"))
        kind = ("tokenizer", "arrays", "enospc")[trial % 3]
        if kind == "enospc":  # in this process: the k-th array write finds the disk full
            real_save, calls, k = np.save, {"n": 0}, rng.randrange(8)

            def full_disk(file, array, **kwargs):
                calls["n"] += 1
                if calls["n"] > k:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real_save(file, array, **kwargs)

            try:
                with mock.patch.object(np, "save", full_disk):
                    code, _, err = cli("prepare", "--config", config)
            except Exception as e:  # noqa: BLE001 - a traceback breaks the error contract
                code, err = None, f"Traceback: {type(e).__name__}: {e}"
            what = f"ENOSPC from array write {k + 1}"
        else:  # a subprocess whose files may not grow past `limit` bytes (SIGXFSZ ignored)
            if kind == "arrays":  # the tokenizer is there already: the token arrays hit the limit
                (data_dir / tokenizer.parent.name).mkdir(parents=True)
                shutil.copyfile(tokenizer, data_dir / tokenizer.parent.name / "spm.model")
            size = tokenizer.stat().st_size if kind == "tokenizer" else largest_array
            limit = int(size * rng.uniform(0.05, 0.98))

            def limit_file_size(limit=limit):
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

            done = subprocess.run([sys.executable, "-m", "translate", "prepare", "--config", str(config)], cwd=REPO,
                                  env=CHILD_ENV, capture_output=True, text=True, preexec_fn=limit_file_size, timeout=120)
            code, err, what = done.returncode, done.stderr, f"{kind}: RLIMIT_FSIZE {limit}"
        ok = one_clear_message(code, err, "cannot write the data cache", str(data_dir), "data.data_dir")
        ok = ok and len(err.strip().splitlines()) == 1
        half_written = _half_written(_cache_files(data_dir))
        code, _, again = cli("prepare", "--config", config)
        rebuilt = code == 0 and _cache_files(data_dir) == expected
        result.record(ok and not half_written and rebuilt, lost=not rebuilt,
                      why=f"{what}: half-written {half_written}, rebuilt {rebuilt}: {err[-300:]}{again[-200:]}")
    return result


def _half_written(files: dict[str, bytes]) -> list[str]:
    """Cache files that are neither complete nor ignored by a later run: a split's files count as complete
    when its directory holds meta.json (what `prepare` checks); temporaries (`*.tmp`) must be gone."""
    def complete(name: str) -> bool:
        directory, _, _ = name.rpartition("/")
        return directory.count("/") == 0 or f"{directory}/meta.json" in files  # tok-*/spm.model or tok-*/split/*
    return sorted(name for name in files if ".tmp" in name or not complete(name))


def _cache_files(data_dir: Path) -> dict[str, bytes]:
    """Every file under `data_dir`, by path relative to it."""
    return {str(p.relative_to(data_dir)): p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# NaN / Inf, divergence, fp16 overflow


def nan_inf(workdir: Path, *, trials: int, seed: int) -> Result:
    """NaN/Inf in the loss and in gradients at seeded steps: skipped, counted, the schedule not
    advanced, and the run ends close to a clean run."""
    result = Result("NaN / Inf loss and gradients")
    rng = random.Random(seed)
    steps = 30
    clean = tiny(workdir / "clean", max_steps=steps, log_every=1, eval_every=1000)
    run_quietly(train_module.train, config_from_dict(clean))
    clean_nll = sum(r["nll"] for r in train_metrics(Path(clean["train"]["out_dir"]))[-10:]) / 10
    calls = rng.sample(range(2, steps), trials)
    values = [(float("nan"), float("inf"))[i % 2] for i in range(trials)]
    in_loss = {c: v for i, (c, v) in enumerate(zip(calls, values)) if i % 4 < 2}
    in_grads = {c: v for i, (c, v) in enumerate(zip(calls, values)) if i % 4 >= 2}
    raw = tiny(workdir / "faulty", max_steps=steps, log_every=1, eval_every=1000)
    cfg = config_from_dict(raw)
    with loss_fault(in_loss), gradient_fault(in_grads):
        code, _ = run_quietly(train_module.train, cfg)
    run_dir = Path(raw["train"]["out_dir"])
    records, skipped = train_metrics(run_dir), train_metrics(run_dir, "skipped")
    nll = sum(r["nll"] for r in records[-10:]) / 10
    schedule_ok = all(r["lr"] == lr_at(r["step"] - 1, cfg.optim, d_model=cfg.model.d_model) for r in records)
    state = load_checkpoint(run_dir / "checkpoint_last.pt")
    finite = all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    for call in sorted(calls):
        expected = "loss" if call in in_loss else "gradients"
        seen = any(s["what"] == expected for s in skipped)
        ok = (code == 0 and seen and len(skipped) == trials and schedule_ok and state["step"] == steps and finite
              and abs(nll - clean_nll) < 0.3)
        result.record(ok, lost=not finite, why=f"call {call} ({expected}): exit {code}, {len(skipped)} skipped, "
                      f"schedule ok {schedule_ok}, nll {nll:.3f} vs clean {clean_nll:.3f}")
    return result


def divergence(workdir: Path, *, trials: int, seed: int) -> Result:
    """Finite garbage (the loss blown up, simulated by scaling the logits from a seeded step on), and
    the real thing: the learning rate 100× too high, which on the tiny model collapses to predicting
    token frequencies instead of blowing up. Training stops within a bounded number of steps with a
    diagnostic naming lr, warmup and precision, and checkpoint_last.pt keeps the state saved before
    the first diverging log interval. A normal run past the same checks does not trigger them."""
    result = Result("divergence (garbage; lr × 100)")
    rng = random.Random(seed)
    for trial in range(trials):
        start = rng.randint(12, 25)
        raw = tiny(workdir / f"t{trial}", max_steps=60, log_every=1, eval_every=10)
        raw["optim"]["lr"] = 3e-3 * rng.choice([1, 100])
        with loss_fault({c: 30.0 for c in range(start, 1000)}):
            error, _ = run_quietly(train_module.train, config_from_dict(raw))
        _record_stop(result, error, Path(raw["train"]["out_dir"]), last_good=start, within=3,
                     what=f"garbage from step {start}")
    # lr × 100, nothing injected. The grace after warmup is cut from 500 to 100 steps to keep CI fast
    # (the tiny model beats token frequencies by step ~80 at its normal lr).
    checks = dict(log_every=5, eval_every=10, divergence_grace_steps=100)
    check_from = 10 + checks["divergence_grace_steps"]  # warmup_steps + grace
    for trial in range(max(1, trials // 2)):
        raw = tiny(workdir / f"lr{trial}", max_steps=1000, seed=1 + trial, **checks)
        raw["optim"]["lr"] = 3e-3 * 100
        error, _ = run_quietly(train_module.train, config_from_dict(raw))
        _record_stop(result, error, Path(raw["train"]["out_dir"]), last_good=check_from, within=3 * 5,
                     what=f"lr x 100, seed {1 + trial}")
    # Never on a normal run (the golden-trace and end-to-end tests also run with the checks on).
    raw = tiny(workdir / "normal", max_steps=check_from + 40, **checks)
    code, _ = run_quietly(train_module.train, config_from_dict(raw))
    result.record(code == 0, why=f"false alarm on a normal run: {code}")
    return result


def _record_stop(result: Result, error, run_dir: Path, *, last_good: int, within: int, what: str) -> None:
    """Stopped with the diagnostic, within `within` steps of `last_good` (the last step before
    divergence), and checkpoint_last.pt is the last validation save (eval_every=10) up to it."""
    message = str(error)
    named = all(w in message for w in ("optim.lr", "optim.warmup_steps", "precision", "checkpoint_last.pt"))
    stopped_at = train_metrics(run_dir)[-1]["step"]
    try:
        kept = load_checkpoint(run_dir / "checkpoint_last.pt")["step"] == 10 * (last_good // 10)
    except UserError:
        kept = False
    ok = isinstance(error, guards.TrainingStopped) and named and stopped_at <= last_good + within and kept
    result.record(ok, lost=not kept, why=f"{what}: {message[:300]}, stopped at {stopped_at}, checkpoint kept {kept}")


def fp16_overflow(workdir: Path, *, trials: int, seed: int) -> Result:
    """fp16 on the CPU (the scaler forced on): overflowing gradients back the loss scale off and the
    run goes on; overflow at every step collapses the scale and stops with a clear message."""
    result = Result("fp16 overflow / loss scale")
    rng = random.Random(seed)
    real_scaler = torch.amp.GradScaler

    def forced_scaler(device, enabled=False):
        return real_scaler("cpu", init_scale=2.0 ** 4, growth_interval=10_000, enabled=True)

    overflows = sorted(rng.sample(range(2, 20), trials))
    raw = tiny(workdir / "backoff", max_steps=20, log_every=1, eval_every=1000)
    with mock.patch.object(torch.amp, "GradScaler", forced_scaler), gradient_fault({c: math.inf for c in overflows}):
        code, out = run_quietly(train_module.train, config_from_dict(raw))
    state = load_checkpoint(Path(raw["train"]["out_dir"]) / "checkpoint_last.pt")
    scale = state["scaler"]["scale"]
    for i, call in enumerate(overflows):
        ok = (code == 0 and out.count("fp16 gradient overflow") == trials and state["step"] == 20
              and f"loss scale now {2.0 ** (4 - i - 1):g}" in out and scale == 2.0 ** (4 - trials))
        result.record(ok, why=f"overflow at call {call}: exit {code}, scale {scale}")
    raw = tiny(workdir / "collapse", max_steps=40, log_every=1, eval_every=1000)
    with mock.patch.object(torch.amp, "GradScaler", forced_scaler), gradient_fault({c: math.inf for c in range(5, 1000)}):
        error, out = run_quietly(train_module.train, config_from_dict(raw))
    state = load_checkpoint(Path(raw["train"]["out_dir"]) / "checkpoint_last.pt")
    ok = isinstance(error, guards.TrainingStopped) and "loss scale collapsed" in str(error) and state["step"] == 5
    result.record(ok, lost=state["step"] != 5, why=f"collapse: {error}")
    return result


# ---------------------------------------------------------------------------------------------
# Corrupt files at run time


def corrupt_checkpoints(workdir: Path, *, trials: int, seed: int) -> Result:
    """Flipped bytes and truncations of a checkpoint, a resume with another model shape, a missing
    tokenizer: each a clear error naming the file; a byte flip never loads as different weights."""
    result = Result("corrupt checkpoint / tokenizer")
    rng = random.Random(seed)
    raw = tiny(workdir, max_steps=2, eval_every=100)
    run_dir = Path(raw["train"]["out_dir"])
    run_quietly(train_module.train, config_from_dict(raw))
    last = run_dir / "checkpoint_last.pt"
    good = last.read_bytes()
    original = load_checkpoint(last)
    bad = workdir / "bad.pt"
    for trial in range(trials):
        data = bytearray(good)
        if trial % 3 == 2:
            data = data[:rng.randrange(len(data))]
        else:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        bad.write_bytes(bytes(data))
        try:
            loaded = load_checkpoint(bad)
        except UserError as e:
            result.record("bad.pt" in str(e))
            continue
        except Exception as e:  # noqa: BLE001 - any other exception breaks the error contract
            result.record(False, why=f"{type(e).__name__}: {e}")
            continue
        same = same_weights(loaded["model"], original["model"]) and loaded["config"] == original["config"]
        result.record(same, lost=not same, why="a corrupted checkpoint loaded as different weights")
    config = write_config(workdir / "c.yaml", {**raw, "train": {**raw["train"], "max_steps": 4}})
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    last.write_bytes(bytes(flipped))
    code, _, err = cli("train", "--config", config, "--resume")
    result.record(one_clear_message(code, err, "checkpoint_last.pt"), why=f"resume from a flipped byte: {err}")
    last.write_bytes(good)
    code, _, err = cli("train", "--config", config, "--resume", "--set", "model.d_ff=128")
    result.record(one_clear_message(code, err, "checkpoint_last.pt", "model.d_ff"), why=f"other shape: {err}")
    lonely = workdir / "elsewhere" / "model.pt"
    lonely.parent.mkdir()
    shutil.copyfile(last, lonely)
    for command in (["eval"], ["translate", "--input", str(config)]):
        code, _, err = cli(*command, "--checkpoint", lonely)
        result.record(one_clear_message(code, err, "spm.model", "model.pt"), why=f"missing tokenizer: {err}")
    return result


# ---------------------------------------------------------------------------------------------
# Hostile input


def config_fuzz(workdir: Path, *, trials: int, seed: int) -> Result:
    """Seeded mutations of configs/demo.yaml: each loads, or fails with one message and exit 2 (no
    traceback, no hang). Accepted configs are checked at load level; rejected ones through the CLI."""
    result = Result("config fuzz (demo.yaml)")
    rng = random.Random(seed)
    text = (REPO / "configs" / "demo.yaml").read_text()
    overrides = [f"data.data_dir={workdir / 'data'}", f"train.out_dir={workdir / 'run'}"]
    for trial in range(trials):
        path = workdir / f"m{trial}.yaml"
        mutated = _mutate_config(text, rng, trial)
        path.write_bytes(mutated if isinstance(mutated, bytes) else mutated.encode("utf-8", "surrogatepass"))
        signal.alarm(20)  # a hang fails the trial instead of the battery
        try:
            try:
                load_config(path, overrides)
                result.record(True)
                continue
            except UserError:
                pass
            code, out, err = cli("prepare", "--config", path, *sum((["--set", o] for o in overrides), []))
            result.record(one_clear_message(code, err, "") and err.startswith("translate prepare: error:"),
                          why=f"mutation {trial}: exit {code}: {err[-300:]}")
        except _Timeout:
            result.record(False, why=f"mutation {trial}: hung ({mutated[:200]!r})")
        except Exception as e:  # noqa: BLE001 - a traceback is exactly what this battery hunts
            result.record(False, why=f"mutation {trial}: {type(e).__name__}: {e!s:.300} ({str(mutated)[:200]!r})")
        finally:
            signal.alarm(0)
    return result


class _Timeout(Exception):
    pass


def _raise_timeout(signum, frame):
    raise _Timeout()


signal.signal(signal.SIGALRM, _raise_timeout)

_WRONG_VALUES = ["abc", "", -1, 0, 1.5, -1e30, 1e30, 10 ** 30, True, None, [1, 2], {"a": 1}, float("nan"),
                 float("inf"), "1e-3", "fp64", "cuda:x", [], {}]


def _mutate_config(text: str, rng: random.Random, trial: int):
    """One seeded mutation: of the parsed tree (wrong type, out of range, unknown/deleted key, a list
    where a mapping belongs) or of the text (syntax errors, truncation, bytes, alias bombs)."""
    kind = trial % 10
    if kind == 0:
        return rng.choice([b"", b"\xff\xfe\x00garbage", b"- a\n- b\n", b"42\n", b"'just a string'\n",
                           b"a: &a [1, 2]\nb: *a\n" + b"c: &c [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" * 1,
                           _alias_bomb(), b"!!python/object/apply:os.system ['true']\n", b"data: [\n"])
    if kind in (1, 2):  # text surgery
        lines = text.splitlines(keepends=True)
        i = rng.randrange(len(lines))
        op = rng.choice(["truncate", "insert", "delete", "duplicate", "indent"])
        if op == "truncate":
            return text[:rng.randrange(len(text))]
        if op == "insert":
            junk = rng.choice([":", "[", "{", "\t", "'", '"', "&x ", "*x ", "- ", "? ", "%", "@", "\x00", "\ud800"])
            j = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:j] + junk + lines[i][j:]
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        else:
            lines[i] = "   " + lines[i]
        return "".join(lines)
    tree = yaml.safe_load(text)
    section = rng.choice(list(tree))
    keys = list(tree[section])
    key = rng.choice(keys)
    if kind == 3:
        tree[section][rng.choice([key + "s", key[:-1], "bogus", "1"])] = 1
    elif kind == 4:
        del tree[section][key]
    elif kind == 5:
        tree[section] = rng.choice([[1, 2], "text", 3, None, [{"a": 1}]])
    elif kind == 6 and isinstance(tree[section][key], dict):
        tree[section][key][rng.choice(["source", "size", "seed", "extra"])] = rng.choice(_WRONG_VALUES)
    else:
        tree[section][key] = rng.choice(_WRONG_VALUES)
    return yaml.safe_dump(tree, sort_keys=False)


def _alias_bomb() -> bytes:
    """A 'billion laughs' YAML: a few hundred bytes that expand to 10^9 strings if walked naively."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    lines.append("model: {d_model: *a8}")
    lines.append("data: *a8")
    return ("\n".join(lines) + "\n").encode()


CORPUS_CASES = ["bom", "crlf", "nul", "invalid_utf8", "long_line", "tabs", "whitespace_lines", "unequal", "empty",
                "truncated_gz", "truncated_xz", "lone_cr"]


def corpus_fuzz(workdir: Path, *, trials: int, seed: int) -> Result:
    """Hostile corpus files (files source): cleaned, or one clear error naming the file (and line)."""
    result = Result("corpus fuzz (files source)")
    rng = random.Random(seed)
    for trial in range(trials):
        case = CORPUS_CASES[trial % len(CORPUS_CASES)]
        directory = workdir / f"{trial}_{case}"
        en = [e for e, _ in PAIRS]
        de = [d for _, d in PAIRS]
        row = rng.randrange(len(PAIRS))
        suffix, expect_error, fragments = "", False, []
        if case == "bom":
            en[0] = "\ufeff" + en[0]
        elif case == "crlf":
            en, de = [s + "\r" for s in en], [s + "\r" for s in de]
        elif case == "nul":
            en[row] = en[row][:3] + "\x00" + en[row][3:]
        elif case == "long_line":
            en[row] = "word " * 20_000
        elif case == "tabs":
            en[row] = en[row].replace(" ", "\t")
        elif case == "whitespace_lines":
            en[row], de[row] = "   \t ", " "
        elif case == "lone_cr":
            en[row] = en[row].replace(" ", "\r", 1)
        elif case == "unequal":
            de = de[:-rng.randint(1, 5)]
            expect_error, fragments = True, ["t.en", "t.de", "not aligned"]
        elif case == "empty":
            en, de = [], []
            expect_error, fragments = True, ["empty"]
        elif case in ("truncated_gz", "truncated_xz"):
            suffix = ".gz" if case == "truncated_gz" else ".xz"
            expect_error, fragments = True, [f"t.de{suffix}", "truncated or corrupt"]
        directory.mkdir(parents=True)
        write_lines(directory / "t.en", en)
        write_lines(directory / "t.de", de)
        if case == "invalid_utf8":
            data = (directory / "t.de").read_bytes().split(b"\n")
            data[row] += b"\xff\xfe"
            (directory / "t.de").write_bytes(b"\n".join(data))
            expect_error, fragments = True, ["t.de", f"line {row + 1}", "invalid UTF-8"]
        if case == "nul" or case == "lone_cr":
            (directory / "t.en").write_bytes((directory / "t.en").read_bytes())
        if suffix:
            raw = (directory / "t.de").read_bytes() * 50
            packed = gzip.compress(raw) if suffix == ".gz" else lzma.compress(raw)
            (directory / "t.de").unlink()
            (directory / f"t.de{suffix}").write_bytes(packed[:len(packed) * 2 // 3])
            (directory / "t.en").write_text("".join(line + "\n" for line in en * 50))
        cfg = tiny(directory)
        cfg["data"].update(train={"source": "files", "prefix": str(directory / "t")}, valid={"source": "none"},
                           test={"source": "none"}, vocab_size=60)
        config = write_config(directory / "c.yaml", cfg)
        try:
            code, out, err = cli("prepare", "--config", config)
        except Exception as e:  # noqa: BLE001
            result.record(False, why=f"{case}: {type(e).__name__}: {e!s:.300}")
            continue
        if expect_error:
            ok = one_clear_message(code, err, *fragments)
        else:
            ok = code == 0 and "pairs read" in out
        result.record(ok, why=f"{case}: exit {code}: {err[-300:]}")
    return result


def translate_input(workdir: Path, *, trials: int, seed: int) -> Result:
    """`translate translate` input: empty lines kept, long lines truncated with a warning, invalid
    UTF-8 a clear error naming the file and line."""
    result = Result("translate input fuzz")
    rng = random.Random(seed)
    raw = tiny(workdir, max_steps=6, eval_every=100)
    run_quietly(train_module.train, config_from_dict(raw))
    checkpoint = Path(raw["train"]["out_dir"]) / "checkpoint_last.pt"
    for trial in range(trials):
        n = rng.randint(3, 8)
        lines = [rng.choice(["", "The house is small.", "   ", "Where is the station?"]) for _ in range(n)]
        long_row = rng.randrange(n)
        lines[long_row] = "the dog sees the cat " * rng.randint(40, 400)
        source = write_lines(workdir / f"in{trial}.txt", lines)
        code, out, err = cli("translate", "--checkpoint", checkpoint, "--input", source, "--beam", "2")
        outputs = out.split("\n")[:-1]
        ok = (code == 0 and len(outputs) == n and all(o == "" for o, s in zip(outputs, lines) if not s.strip())
              and f"warning: line {long_row + 1}" in err and "truncated" in err)
        result.record(ok, lost=code == 0 and len(outputs) != n, why=f"trial {trial}: exit {code}, "
                      f"{len(outputs)} lines for {n}: {err[-300:]}")
    bad = workdir / "bad.txt"
    bad.write_bytes(b"The house is small.\nDas \xff Haus\n")
    code, out, err = cli("translate", "--checkpoint", checkpoint, "--input", bad)
    result.record(one_clear_message(code, err, "bad.txt", "line 2", "UTF-8"), why=f"invalid UTF-8: {err}")
    return result


# name → (function, trials in CI, trials with --full)
FAULTS = {
    "kill9": (kill9, 10, 40),
    "signals": (stop_signals, 2, 6),
    "disk_full": (disk_full, 2, 6),
    "disk_full_prepare": (disk_full_prepare, 3, 9),
    "nan_inf": (nan_inf, 4, 12),
    "divergence": (divergence, 2, 6),
    "fp16": (fp16_overflow, 3, 8),
    "corrupt": (corrupt_checkpoints, 30, 300),
    "config_fuzz": (config_fuzz, 200, 1000),
    "corpus_fuzz": (corpus_fuzz, len(CORPUS_CASES), 3 * len(CORPUS_CASES)),
    "translate_input": (translate_input, 2, 6),
}


def run_fault(name: str, workdir: Path, *, full: bool = False, seed: int = 0) -> Result:
    fn, fast_trials, full_trials = FAULTS[name]
    workdir.mkdir(parents=True, exist_ok=True)
    trials = full_trials if full else fast_trials
    if fn is kill9:
        return fn(workdir, kills=trials, seed=seed)
    return fn(workdir, trials=trials, seed=seed)

