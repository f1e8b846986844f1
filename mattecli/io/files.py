"""Atomic files: every output is written to a temporary file beside it, then renamed over it.

An interrupted run never leaves a partial file under an output's name. The temporary file is
``.<name>.<pid>.<random>.part``, locked (``flock``) while it is written; one left by a killed
process is removed by the next run over that folder (:func:`remove_stale_parts`), and a process
that is stopping removes those of the writes it cannot wait for (:func:`abandon_writes`). An
existing output that is not a regular file (a device, a pipe, a socket) is never written over.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from mattecli.errors import OutputError
from mattecli.io.inputs import file_kind

try:  # POSIX: writers lock their temporary file, cleaners only remove unlocked ones
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["abandon_writes", "atomic_write_bytes", "not_regular_output", "remove_stale_parts"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: permissions for new files: what open() would give (mkstemp alone gives 0600)
_FILE_MODE = 0o666 & ~_current_umask()
#: longest file name most file systems allow (bytes)
_NAME_MAX = 255


def _lock(fd: int) -> None:
    """Hold an exclusive ``flock`` on ``fd`` until it is closed (best effort: some file systems refuse)."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _part_stem(name: str) -> str:
    """``name`` shortened (whole UTF-8 characters) so that ``.<name>.<pid>.<8 random>.part`` fits a file name."""
    room = _NAME_MAX - len(f"..{os.getpid()}.12345678.part")
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= room:
        return name
    return raw[:room].decode("utf-8", "ignore")


def not_regular_output(path: str | os.PathLike) -> str | None:
    """What an existing output path is when it is neither a regular file nor a folder (``"a
    device (character)"``, ``"a pipe (FIFO)"``, ``"a socket"``; symlinks followed), else None.

    Such a path is never written over (renaming a file over ``/dev/null`` would replace the device)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return file_kind(mode)


def _refuse_non_regular(path: Path) -> None:
    kind = not_regular_output(path)
    if kind is not None:
        raise OutputError(
            f"{path}: is {kind}, not a regular file; an output is never written over one",
            hint="remove it or choose another output name",
        )


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename.

    The folder is created if needed; the file gets the permissions ``open()`` would give. The
    temporary file is ``.<name>.<pid>.<random>.part``, locked while written and fsynced before the
    rename; on any failure, an interruption included (``KeyboardInterrupt``, or the exception a
    CLI's SIGTERM / SIGHUP handler raises), it is removed and ``path`` is left as it was (absent or
    with its old content), and an interruption is re-raised as it is. One left behind by a killed
    process (SIGKILL, a power cut) is removed by the next run (:func:`remove_stale_parts`). An
    existing ``path`` that is not a regular file (a device, a pipe, a socket; symlinks followed) is
    never replaced: it is refused before anything is written, and checked again before the rename.

    Raises:
        OutputError: the folder is not writable, the disk is full, ``path`` is a folder or not a
            regular file, etc.
    """
    path = Path(path)
    _refuse_non_regular(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{path.parent}: cannot create output folder ({err.strerror or err})") from err
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{_part_stem(path.name)}.{os.getpid()}.", suffix=".part", dir=path.parent)
    except OSError as err:
        raise OutputError(
            f"{path.parent}: cannot write here ({err.strerror or err})",
            hint="choose a writable output folder",
        ) from err
    _writing(tmp, True)
    try:
        _lock(fd)
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            _refuse_non_regular(path)
            os.replace(tmp, path)  # still locked: the temporary name never exists unlocked while we live
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OutputError) or not isinstance(err, Exception):  # an interruption stays one
            raise
        if isinstance(err, IsADirectoryError) or path.is_dir():
            raise OutputError(f"{path}: is a folder, cannot write the output there") from err
        if isinstance(err, OSError):
            raise OutputError(f"{path}: write failed ({err.strerror or err})") from err
        raise
    finally:
        _writing(tmp, False)


# ----------------------------------------------------------------------------- writes in flight
#: temporary files this process's :func:`atomic_write_bytes` calls are writing now
_IN_FLIGHT: set[str] = set()
_IN_FLIGHT_CHANGED = threading.Condition()


def _writing(tmp: str, started: bool) -> None:
    with _IN_FLIGHT_CHANGED:
        if started:
            _IN_FLIGHT.add(tmp)
        else:
            _IN_FLIGHT.discard(tmp)
        _IN_FLIGHT_CHANGED.notify_all()


def abandon_writes(timeout: float) -> list[Path]:
    """For a process that is stopping: let the atomic writes in flight in other threads end, then
    remove the temporary files of those that did not; returns the removed paths.

    Waits up to ``timeout`` seconds for every :func:`atomic_write_bytes` call of this process to
    finish (each completes its output or removes its temporary file). A write still running then
    (blocked on a hung disk or file system) is abandoned: its temporary file is removed here, its
    output stays as it was, and the caller should exit without waiting for that thread. An empty
    list means nothing was abandoned.
    """
    deadline = time.monotonic() + max(0.0, timeout)
    with _IN_FLIGHT_CHANGED:
        while _IN_FLIGHT:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _IN_FLIGHT_CHANGED.wait(left)
        stuck = sorted(_IN_FLIGHT)
    removed = []
    for tmp in stuck:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
            removed.append(Path(tmp))
    return removed


# ----------------------------------------------------------------------------- stale temporary files
#: ``.<name>.<pid>.<random>.part``: a temporary file of :func:`atomic_write_bytes` (tempfile's 8 random chars)
_PART = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.part$")
#: the older form, without the pid: ``.<name>.<random>.part`` (no owner to check)
_OLD_PART = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.part$")


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists here (when unsure: yes)."""
    if pid <= 0:
        return True  # never ours; os.kill(0, ...) would mean the process group
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's live process
        return True
    return True


def _remove_if_unlocked(path: str) -> bool:
    """Unlink ``path`` unless a live writer holds its lock (or it was swapped meanwhile)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a writer (on this or another host) still has it open
            except OSError:
                pass  # no locks on this file system: the dead pid is the evidence
        st, now = os.fstat(fd), os.lstat(path)
        if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino) or not stat.S_ISREG(now.st_mode):
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_stale_parts(folder: str | os.PathLike, names: Iterable[str] = ()) -> list[Path]:
    """Remove temporary files that killed writers left in ``folder``; returns the removed paths.

    Only regular files named as :func:`atomic_write_bytes` names them are candidates, and only
    when their owner is gone: the pid in the name is not a live process here *and* nobody holds
    the file's lock (a writer on another host sharing the folder keeps its lock; the pid alone
    would not tell). Names of the older form ``.<name>.<random>.part`` carry no owner, so they are
    removed only for ``names``, the outputs the caller is about to write itself. Best effort:
    anything that cannot be listed or removed is left alone.
    """
    folder = Path(folder)
    wanted = set(names)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".part")):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        match = _PART.match(name)
        if match:
            if _pid_alive(int(match["pid"])):
                continue
        else:
            match = _OLD_PART.match(name)
            if not match or match["name"] not in wanted:
                continue
        if _remove_if_unlocked(entry.path):
            removed.append(Path(entry.path))
    return removed
