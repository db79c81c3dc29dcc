"""Checkpoints: atomic writes, verified reads, and weight averaging (`translate average`).

A checkpoint is a `torch.save`d dict (loadable with `weights_only=True`):
    format, model, optimizer, scaler, step, epoch, position, stats, config (the resolved config
    as plain dicts), tokenizer (file name, relative to the checkpoint's directory), vocab_size,
    digest (SHA-256 of every tensor, so a flipped byte is caught on load instead of decoded).
Writes go to a temporary file in the same directory, are fsynced, then renamed over the target,
and the rename is fsynced (`translate.durable`): a crash, a power loss or a full disk never leaves a
partial `checkpoint_last.pt`, and the previous one survives.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import threading
import zipfile
from pathlib import Path

import torch

from translate.durable import sync_directory, sync_file
from translate.errors import UserError

FORMAT = 1
NUMBERED = re.compile(r"checkpoint_step(\d+)\.pt$")


def save_checkpoint(state: dict, path: Path) -> None:
    """Write `state` to `path` atomically; a failed write leaves the old file and no temp file."""
    state = {**state, "format": FORMAT}
    state["digest"] = tensor_digest(state)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            sync_file(f)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write (e.g. disk full) as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise UserError(f"cannot write checkpoint {path}: {reason}; the previous checkpoint is intact. "
                        "Free disk space or set train.out_dir to a writable place, then --resume") from None
    _sync_rename(path)


def _sync_rename(path: Path) -> None:
    """Make the rename that put `path` in place durable; if that fails, the new file is there already."""
    try:
        sync_directory(path.parent)
    except OSError as e:
        raise UserError(f"checkpoint {path} was written, but syncing its directory failed ({e.strerror or e}): a "
                        "power loss could still lose it. Check the disk, then --resume") from None


class CheckpointWriter:
    """Writes checkpoints in a background thread, so that training goes on while they go to disk.

    A Transformer-base checkpoint with its Adam state is ~0.9 GB; digesting, writing and fsyncing it
    and copying it to checkpoint_best.pt / checkpoint_step*.pt took ~5 s per validation on a 2-core
    CPU (docs/PERFORMANCE.md), time the GPU sat idle. `write` only snapshots the tensors to host memory
    (the part training must wait for: after it, the next steps may change the weights), then a thread
    does `save_checkpoint`, the copies and `after` (e.g. pruning old numbered checkpoints), in that
    order. One write at a time: `write` and `wait` first wait for the previous one and re-raise its
    error (a UserError naming the file) in the caller's thread. Each file is still written atomically,
    so a failed or interrupted write leaves the previous checkpoint in place. The thread is not a
    daemon: if the caller dies, the interpreter finishes the write before it exits.
    """

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, state: dict, path: Path, *, copies: tuple[Path, ...] = (), after=None) -> None:
        self.wait()
        snapshot = host_copy(state)

        def job() -> None:
            try:
                save_checkpoint(snapshot, path)
                for dst in copies:
                    copy_checkpoint(path, dst)
                if after is not None:
                    after()
            except BaseException as e:  # noqa: BLE001 -- re-raised by wait() in the training thread
                self._error = e

        self._thread = threading.Thread(target=job, name=f"write {path.name}")
        self._thread.start()

    def join(self) -> None:
        """Block until the last write has ended, keeping its error for `wait` (for a caller that is
        already failing with an error of its own)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def wait(self) -> None:
        """Block until the last write is on disk; re-raise its error."""
        self.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def host_copy(value, _copies: dict | None = None):
    """`value` with every tensor copied to host memory: a snapshot later training steps cannot change.
    Tensors that are one view of one storage (tied embeddings) stay one tensor, so the file stores them once."""
    copies = {} if _copies is None else _copies
    if isinstance(value, torch.Tensor):
        key = (value.device, value.untyped_storage().data_ptr(), value.storage_offset(), value.shape,
               value.stride(), value.dtype)
        if key not in copies:
            copies[key] = value.detach().to("cpu", copy=True)
        return copies[key]
    if isinstance(value, dict):
        return {k: host_copy(item, copies) for k, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(host_copy(item, copies) for item in value)
    return value


def copy_checkpoint(src: Path, dst: Path) -> None:
    """Copy a checkpoint atomically (as `save_checkpoint` writes): `dst` is the old or the new file."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        shutil.copyfile(src, tmp)  # the kernel's fast copy; then its pages to disk through any descriptor
        with open(tmp, "rb") as copied:
            sync_file(copied)
        os.replace(tmp, dst)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write checkpoint {dst}: {e.strerror or e}; checkpoint_last.pt is intact. "
                        "Free disk space or set train.out_dir to a writable place, then --resume") from None
    _sync_rename(dst)


def load_checkpoint(path: Path) -> dict:
    """Read and verify a checkpoint; a missing, truncated or corrupted file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # Unpickling damaged bytes can fail in many ways; each of these means "this file is corrupt".
    except (RuntimeError, EOFError, OSError, ValueError, LookupError, TypeError, AttributeError,
            pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise UserError(f"checkpoint {path} is truncated or corrupt and cannot be read ({_first_line(e)}); "
                        "use another checkpoint of the run (checkpoint_step*.pt) or retrain") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise UserError(f"{path} is not a translate checkpoint (format {FORMAT})")
    if tensor_digest(state) != state.get("digest"):
        raise UserError(f"checkpoint {path} is corrupt: its contents do not match the digest written with it; "
                        "use another checkpoint of the run (checkpoint_step*.pt) or retrain")
    return state


def tensor_digest(state: dict) -> str:
    """SHA-256 over every tensor and scalar in `state` (except the digest), in a fixed order."""
    h = hashlib.sha256()

    def visit(prefix: str, value) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{prefix}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")  # its buffer, not a copy
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                if prefix == "" and key == "digest":
                    continue
                visit(f"{prefix}.{key}", value[key])
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(f"{prefix}[{i}]", item)
        else:
            h.update(f"{prefix}={value!r}".encode())

    visit("", state)
    return h.hexdigest()


def numbered_checkpoints(run_dir: Path) -> list[Path]:
    """`checkpoint_step<N>.pt` files of `run_dir`, oldest (smallest N) first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).glob("checkpoint_step*.pt") if (m := NUMBERED.search(p.name))]
    return [p for _, p in sorted(found)]


def prune_numbered(run_dir: Path, keep_last: int) -> None:
    for path in numbered_checkpoints(run_dir)[:-keep_last or None] if keep_last else []:
        path.unlink(missing_ok=True)


def model_shape_mismatch(saved: dict, current: dict) -> str | None:
    """The first `model.*` field that differs between two configs' model sections, described."""
    for key in sorted(set(saved) | set(current)):
        if key in ("dropout", "attention_dropout", "activation_dropout"):
            continue  # regularisation may change on resume; shapes may not
        if saved.get(key) != current.get(key):
            return f"model.{key} is {current.get(key)!r} in the config but {saved.get(key)!r} in the checkpoint"
    return None


def average_checkpoints(paths: list[Path]) -> dict:
    """The first checkpoint with its model weights replaced by the mean over all `paths`."""
    if not paths:
        raise UserError("nothing to average: no checkpoints given")
    states = [load_checkpoint(p) for p in paths]
    first = states[0]
    for path, state in zip(paths[1:], states[1:]):
        mismatch = model_shape_mismatch(first["config"]["model"], state["config"]["model"])
        if mismatch or state["vocab_size"] != first["vocab_size"] or state["model"].keys() != first["model"].keys():
            raise UserError(f"cannot average {path} with {paths[0]}: different models "
                            f"({mismatch or 'vocabulary or parameters differ'})")
    averaged = {}
    for key, value in first["model"].items():
        if value.is_floating_point():
            total = sum(s["model"][key].double() for s in states)
            averaged[key] = (total / len(states)).to(value.dtype)
        else:
            averaged[key] = value.clone()
    result = {k: v for k, v in first.items() if k not in ("optimizer", "scaler", "digest")}
    result.update(model=averaged, averaged_from=[str(p) for p in paths],
                  step=max(s["step"] for s in states))
    return result


def run_average(args) -> int:
    """`translate average`: write the mean of the given (or the last N numbered) checkpoints."""
    if args.last:
        count, run_dir = args.last
        if not count.isdigit() or int(count) < 1:
            raise UserError(f"--last N RUN_DIR: N must be a positive integer, not {count!r}")
        paths = numbered_checkpoints(Path(run_dir))[-int(count):]
        if len(paths) < int(count):
            raise UserError(f"{run_dir} has {len(paths)} numbered checkpoints (checkpoint_step*.pt), not {count}; "
                            "set train.save_every to keep some")
    else:
        paths = list(args.inputs)
    state = average_checkpoints(paths)
    output = Path(args.output)
    if output.resolve() in {p.resolve() for p in paths}:
        raise UserError(f"--output {output} is one of the inputs; choose another file name")
    first_dir = paths[0].parent.resolve()
    if output.parent.resolve() != first_dir:
        # The tokenizer path is relative to the checkpoint; point it at the original.
        state["tokenizer"] = os.path.relpath(first_dir / state["tokenizer"], output.parent.resolve())
    output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(state, output)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) into {output}")
    return 0


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
