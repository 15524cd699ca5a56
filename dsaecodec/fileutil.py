"""Atomic outputs: nothing is overwritten without being asked, nothing partial is left behind."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


class OutputExistsError(Exception):
    """The output path exists and the caller did not ask to overwrite it."""


def check_output(target: Path, force: bool) -> None:
    """Raise `OutputExistsError` (or `PermissionError`) before any work is done on `target`."""
    target = Path(target)
    if target.exists() and not force:
        raise OutputExistsError(f"{target} already exists (use --force to overwrite)")
    parent = target.parent if str(target.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(f"output directory {parent} is a file, not a directory")
    if not parent.is_dir():
        raise FileNotFoundError(f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"output directory {parent} is not writable")


@contextlib.contextmanager
def atomic_output(target: Path, force: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` only if the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary file or folder is removed
    and `target` is left as it was. A file never replaces a folder (IsADirectoryError), even with `force`.
    """
    target = Path(target)
    check_output(target, force)
    if not directory and target.is_dir():
        raise IsADirectoryError(f"{target} is a folder; refusing to replace it with a file")
    parent = target.parent if str(target.parent) else Path(".")
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if directory else 0o666) & ~umask)
        if directory and target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif directory and os.path.lexists(target):
            target.unlink()  # rename() cannot put a folder over a file or a symlink
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
