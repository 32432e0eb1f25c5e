"""Writing files so that a crash at any instant leaves the old or the new
content, never half of it; and hashing them.

The one pattern: write a temporary sibling, fsync it, rename it over the
target (atomic on POSIX), fsync the folder so the rename itself survives a
power cut. Errors are OSError; callers turn them into their own one-line
user errors.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

TMP_PREFIX = ".tmp-"   # temporary siblings; llmtui removes only its own


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # platforms without directory fds (Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write `data` to a new file and fsync it (no rename: for files inside a
    temporary directory that is itself renamed into place)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def temp_sibling(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically; an existing file keeps its permissions."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        write_synced(tmp, data)
        try:
            os.chmod(tmp, path.stat().st_mode & 0o777)
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
