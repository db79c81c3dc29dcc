"""Process-level plumbing for training: devices and DDP, torch.compile, the run directory, stop signals."""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import yaml

from translate.config import Config, config_changes, config_to_dict, config_to_yaml
from translate.errors import UserError

if TYPE_CHECKING:
    from translate.model import Transformer


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class StopSignals:
    """SIGINT/SIGTERM ask the loop to save and stop after the current step."""

    def __init__(self):
        self.signal_name: str | None = None
        self.exit_code = 0
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame) -> None:
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 130 if signum == signal.SIGINT else 0

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def resolve_device(name: str, *, setting: str, cpu_fix: str) -> torch.device:
    """"auto" (CUDA if there is a GPU, else the CPU) or a torch device name; a CUDA device without a
    GPU is a UserError naming the setting (`train.device`, `--device`) and how to ask for the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{setting} is {name!r} but no CUDA GPU is available; use {cpu_fix}")
    return device


def setup_distributed(cfg: Config) -> Distributed:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(cfg.train.device, setting="train.device", cpu_fix="--set train.device=cpu")
    if world_size == 1:
        return Distributed(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return Distributed(rank=rank, world_size=world_size, device=device)


def compile_layers(model: Transformer, **compile_options) -> None:
    """`train.compile`: each layer of the model's uncached path through torch.compile(dynamic=True),
    in place (`Transformer.compile_layers`), with source and target lengths kept independent."""
    independent_lengths()
    model.compile_layers(lambda layer: torch.compile(layer, dynamic=True, **compile_options))


def independent_lengths() -> None:
    """Turn off Dynamo's "duck sizing", which gives dimensions of equal size one symbol.

    Token-bucketed batches often have equally long source and target sides, so a first graph traced
    on such a batch assumed S == T, and the first batch where they differ recompiled the whole model
    and its backward (results/cpu/compile_recompile_duck_on.log).
    With duck sizing off, S and T are separate symbols from the start. Other specialisations remain:
    size 1, and on the GPU Inductor's guards on a length being a multiple of 8 (results/bench/compile_diag.log), so a few graphs per process are still expected;
    each is a one-time cost that a long run amortises (docs/PERFORMANCE.md).

    The setting is process-wide (a torch.fx setting, private API) and stays off for every later
    torch.compile in the process.
    """
    import torch.fx.experimental._config as fx_config
    fx_config.use_duck_shape = False


def barrier(env: Distributed) -> None:
    if env.world_size > 1:
        dist.barrier()


def create_run_dir(run_dir: Path, cfg: Config, tokenizer_file: Path, *, overwrite: bool, resume: bool = False) -> None:
    """Create (or empty, overwrite) the run directory with config.yaml and spm.model; a resumed run
    keeps its config.yaml until `record_resumed_config` has compared it with the new one."""
    try:
        if overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (resume and (run_dir / "config.yaml").is_file()):
            (run_dir / "config.yaml").write_text(config_to_yaml(cfg))
        shutil.copyfile(tokenizer_file, run_dir / "spm.model")
    except OSError as e:
        raise UserError(f"cannot set up run directory {run_dir}: {e.strerror or e}; "
                        "free disk space or set train.out_dir to a writable place") from None


def record_resumed_config(run_dir: Path, cfg: Config, *, step: int) -> str:
    """On resume: write the config now in effect to config.yaml and, when it differs from the one
    there, keep that one as config_until_step<step>.yaml. Returns the line for train.log ("" when
    nothing changed)."""
    path = run_dir / "config.yaml"
    old = yaml.safe_load(path.read_text()) if path.is_file() else {}
    changes = config_changes(old or {}, config_to_dict(cfg))
    if not changes:
        return ""
    kept = run_dir / f"config_until_step{step}.yaml"
    n = 1
    while kept.exists():  # resumed at the same step before: keep every earlier config
        kept, n = run_dir / f"config_until_step{step}.{n}.yaml", n + 1
    try:
        path.replace(kept)
        path.write_text(config_to_yaml(cfg))
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}; free disk space, then --resume") from None
    return (f"resumed with config changes ({'; '.join(changes)}); config.yaml now holds the config in effect, "
            f"{kept.name} the one before")


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to start over an existing run (or to resume a missing one) before anything is written."""
    exists = run_dir.exists() and any(run_dir.iterdir())
    if exists and not (resume or overwrite):
        raise UserError(f"run directory {run_dir} already exists: pass --resume to continue it, "
                        "--overwrite to delete it and start afresh, or --set train.out_dir=NEW_DIR")
    if resume and not exists:
        raise UserError(f"--resume: run directory {run_dir} does not exist or is empty; start without --resume")
