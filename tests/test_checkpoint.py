"""checkpoint.CheckpointWriter: background writes that snapshot first, keep order and report errors."""

import errno
import os

import pytest
import torch

from translate.checkpoint import (CheckpointWriter, copy_checkpoint, host_copy, load_checkpoint, numbered_checkpoints,
                                  save_checkpoint)
from translate.errors import UserError


def state_with(weight: torch.Tensor) -> dict:
    return {"model": {"weight": weight}, "step": 1}


def test_the_write_is_a_snapshot_of_the_state_at_the_call(tmp_path):
    weight = torch.zeros(1000)
    writer = CheckpointWriter()
    writer.write(state_with(weight), tmp_path / "checkpoint_last.pt")
    weight.add_(1.0)  # the next training step changes the weights in place while the thread writes
    writer.wait()
    assert torch.equal(load_checkpoint(tmp_path / "checkpoint_last.pt")["model"]["weight"], torch.zeros(1000))


def test_copies_and_the_after_hook_follow_the_write_in_order(tmp_path):
    writer, seen = CheckpointWriter(), []
    for step in (1, 2, 3):
        writer.write(state_with(torch.full((3,), float(step))), tmp_path / "checkpoint_last.pt",
                     copies=(tmp_path / f"checkpoint_step{step}.pt", tmp_path / "checkpoint_best.pt"),
                     after=lambda step=step: seen.append(sorted(p.name for p in numbered_checkpoints(tmp_path))))
    writer.wait()
    assert seen == [["checkpoint_step1.pt"], ["checkpoint_step1.pt", "checkpoint_step2.pt"],
                    ["checkpoint_step1.pt", "checkpoint_step2.pt", "checkpoint_step3.pt"]]
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "checkpoint_step3.pt"):
        assert load_checkpoint(tmp_path / name)["model"]["weight"].tolist() == [3.0, 3.0, 3.0]


def test_a_failed_write_is_raised_by_the_next_wait_or_write(tmp_path):
    writer = CheckpointWriter()
    missing = tmp_path / "no_such_dir" / "checkpoint_last.pt"
    writer.write(state_with(torch.zeros(2)), missing)
    writer.join()  # a caller already failing joins without raising ...
    with pytest.raises(UserError, match="cannot write checkpoint .*no_such_dir"):
        writer.wait()  # ... and the error stays for the next wait
    writer.wait()  # raised once
    writer.write(state_with(torch.zeros(2)), missing)
    with pytest.raises(UserError, match="cannot write checkpoint"):
        writer.write(state_with(torch.zeros(2)), tmp_path / "checkpoint_last.pt")
    assert not (tmp_path / "checkpoint_last.pt").exists()  # the failed write stopped the next one


def test_host_copy_keeps_tied_tensors_as_one():
    embedding = torch.randn(4, 3)
    state = {"embed": embedding, "output": embedding.detach(), "other": embedding.clone(), "row": embedding[1]}
    copy = host_copy(state)
    assert copy["embed"] is copy["output"] and copy["other"] is not copy["embed"]
    assert copy["embed"].untyped_storage().data_ptr() != embedding.untyped_storage().data_ptr()
    assert torch.equal(copy["row"], embedding[1])


def test_written_and_copied_checkpoints_reach_the_disk_before_and_after_their_rename(tmp_path, fsynced):
    """Each file is fsynced under its temporary name, then the directory after the rename: a power
    loss leaves the old checkpoint or the new one, never a complete-looking name over lost data."""
    last, best = tmp_path / "checkpoint_last.pt", tmp_path / "checkpoint_best.pt"
    save_checkpoint(state_with(torch.ones(4)), last)
    copy_checkpoint(last, best)
    assert fsynced == [str(tmp_path / ".checkpoint_last.pt.tmp"), f"rename -> {last}", str(tmp_path),
                       str(tmp_path / ".checkpoint_best.pt.tmp"), f"rename -> {best}", str(tmp_path)]
    assert load_checkpoint(best)["model"]["weight"].tolist() == [1.0] * 4


def test_a_directory_that_cannot_be_synced(tmp_path, monkeypatch):
    """EINVAL (a filesystem without directory fsync) is not an error; another failure says the new
    checkpoint is already in place, not that the old one is intact."""
    real_fsync = os.fsync

    def failing_on_directories(code):
        def fsync(fd):
            if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
                raise OSError(code, os.strerror(code))
            real_fsync(fd)
        return fsync

    path = tmp_path / "checkpoint_last.pt"
    monkeypatch.setattr(os, "fsync", failing_on_directories(errno.EINVAL))
    save_checkpoint(state_with(torch.ones(2)), path)
    monkeypatch.setattr(os, "fsync", failing_on_directories(errno.EIO))
    with pytest.raises(UserError, match="checkpoint_last.pt was written, but syncing its directory failed"):
        save_checkpoint(state_with(torch.zeros(2)), path)
    assert load_checkpoint(path)["model"]["weight"].tolist() == [0.0, 0.0]
