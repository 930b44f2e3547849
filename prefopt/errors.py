"""Errors whose message is one line naming the culprit (config key, file, row, step): the
command-line entry points print just that line. Also the filesystem's errors a user can fix (a full
disk, a folder that cannot be written), as one line naming the path and the remedy."""

from __future__ import annotations

import errno


class ConfigError(ValueError):
    pass


class TrainingError(RuntimeError):
    """A run that cannot go on (non-finite steps, out of memory); the message is one line."""


class Preempted(TrainingError):
    """SIGTERM: a checkpoint was written; resume with ``trainer.resume=auto``."""


class StorageError(ConfigError):
    """The filesystem refused a write the user can fix (a full disk, a folder that cannot be written);
    what was written before is intact."""


def first_line(error: BaseException) -> str:
    """An exception's first line of text, or its type's name when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


_FREE_SPACE = "free space there (or write elsewhere) and run the command again"
_WRITABLE = "choose a folder you can write (hydra.run.dir=..., out=..., PREFOPT_CACHE=...)"
STORAGE_REMEDIES = {  # the filesystem's refusals a user can fix; any other OSError is a bug's and keeps its traceback
    errno.ENOSPC: _FREE_SPACE, errno.EDQUOT: _FREE_SPACE, errno.EFBIG: _FREE_SPACE,
    errno.EROFS: _WRITABLE, errno.EACCES: _WRITABLE, errno.EPERM: _WRITABLE,
    errno.ENOTDIR: "a part of that path is a file, not a folder; choose another path",
    errno.EISDIR: "that path is a folder; choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EIO: "the disk reported an I/O error; check it, or write elsewhere",
}


def storage_message(error: BaseException, where: str | None = None) -> str | None:
    """One line for an OSError a user can fix (naming its path, else ``where``), or None for any
    other error (a bug's: it keeps its traceback)."""
    if not isinstance(error, OSError) or error.errno not in STORAGE_REMEDIES:
        return None
    path = error.filename or where or "a file"
    return f"{path}: {error.strerror or errno.errorcode[error.errno]}; {STORAGE_REMEDIES[error.errno]}"
