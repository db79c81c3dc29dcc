"""How long the training loop waits for a validation's checkpoints: a Transformer-base model with its
Adam state (~0.9 GB), written as checkpoint_last.pt and copied to checkpoint_best.pt and
checkpoint_step*.pt. (a) synchronously, as before the background writer; (b) through
checkpoint.CheckpointWriter: the call returns after the host snapshot, the rest runs in a thread.
Run from the repository root: python results/cpu/checkpoint_write.py"""
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, ".")
from translate.checkpoint import CheckpointWriter, copy_checkpoint, save_checkpoint  # noqa: E402
from translate.config import ModelConfig  # noqa: E402
from translate.model import Transformer  # noqa: E402

model = Transformer(ModelConfig(), vocab_size=32000, pad_id=0)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for p in model.parameters():
    p.grad = torch.zeros_like(p)
optimizer.step()
print(f"torch {torch.__version__}, {sum(p.numel() for p in model.parameters()):,} parameters")
folder = Path(tempfile.mkdtemp(dir="."))
writer = CheckpointWriter()
for trial in range(3):
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": trial}
    start = time.perf_counter()
    save_checkpoint(state, folder / "checkpoint_last.pt")
    for name in ("checkpoint_best.pt", "checkpoint_step1.pt"):
        copy_checkpoint(folder / "checkpoint_last.pt", folder / name)
    synchronous = time.perf_counter() - start
    start = time.perf_counter()
    writer.write(state, folder / "checkpoint_last.pt", copies=(folder / "checkpoint_best.pt", folder / "checkpoint_step1.pt"))
    returned = time.perf_counter() - start
    writer.wait()
    total = time.perf_counter() - start
    print(f"trial {trial}: synchronous {synchronous:.2f} s; background writer: the call returned after {returned:.2f} s, "
          f"all on disk after {total:.2f} s; file {(folder / 'checkpoint_last.pt').stat().st_size / 1e6:.0f} MB")
for path in folder.iterdir():
    path.unlink()
folder.rmdir()
