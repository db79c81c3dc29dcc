"""Durable writes: a file's bytes reach the disk before a name points at it, and the rename that
gives it that name reaches the disk after. Writers write under a temporary name, `sync_file`, rename,
then `sync_directory`: a crash or a power loss leaves the old file or the new one, never a complete-
looking name over empty or partial data."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def sync_file(f) -> None:
    """Flush Python's buffer and fsync an open file."""
    f.flush()
    os.fsync(f.fileno())


def sync_directory(path: Path) -> None:
    """fsync a directory: its entries, i.e. the renames into it, become durable. A filesystem that
    cannot sync a directory (EINVAL, ENOTSUP) has nothing to make durable this way: not an error."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
