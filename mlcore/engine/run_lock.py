"""One training run per output folder: ``output_dir/.lock``.

Two ``mlcore train`` processes writing one folder (the same command started twice by
mistake) would interleave their checkpoints. The run's main process (rank 0 under
torchrun: the other ranks write nothing) takes the lock before it reads or writes anything
in the folder, and gives it back however ``fit`` ends.

The lock is the file ``.lock``, created with ``O_CREAT | O_EXCL`` (exactly one process
can create it) and holding JSON ``{pid, host, started, command}``, written only once the
creator holds ``fcntl.flock`` on it. The flock is what says whether the holder lives: the
kernel drops it when the process ends, however it ends — SIGKILL included — and a reused
pid does not hold it. So a second run finds the file and:

* cannot take its flock: the holder runs; the second run stops with an
  :class:`~mlcore.errors.MlcoreError` naming the folder and the holder's pid, host,
  start time and command;
* can take its flock: the holder died without cleaning up; the lock is stale, the new run
  removes it (while holding the old file's flock, so of two runs finding it only one
  does), takes the folder, and warns that it did so.

A process forked by the holder (a DataLoader worker) would share the flock and keep it
after the holder died; forked children close their copy at once (``os.register_at_fork``).
A lock whose process is gone while its flock is still held (a run taking it over holds
it for a moment; or a child started otherwise survives) is looked at again for
``SETTLE_S`` seconds, then refused with a message saying so. Where flock is not available
(no ``fcntl``, or a file system refusing it), a lock whose process no longer exists on
this host is stale; one from another host is left alone, and the message says which file
to delete once that run is known to be gone.

Folders created for the lock are removed again when the run stops before writing
anything in them (a config or data error found during setup leaves no run folder).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import socket
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

from ..errors import MlcoreError

try:
    import fcntl
except ImportError:  # not POSIX: only the pid check is left
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
#: how long a lock file may stay empty (its creator between creating and writing it)
#: or locked by a dead pid (a second run taking it over) before that counts as final
SETTLE_S = 2.0

_held: set[int] = set()  # the lock files this process holds open


def _close_in_child() -> None:
    """In a forked child: close the inherited lock files, so the lock ends with its holder."""
    for fd in list(_held):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class RunLock:
    """The lock of one run folder; ``acquire()`` takes it, ``close()`` gives it back (and
    removes the folder again when this lock created it and nothing else was written)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._made: list[Path] = []  # folders created for the lock, deepest first
        self._adopted: list[Path] = []  # folders the caller created for this run (adopt())

    @property
    def held(self) -> bool:
        return self._fd is not None

    def adopt(self, folder: str | os.PathLike) -> None:
        """Treat ``folder`` (made by the caller for this run: a new ``version_<n>``) as made
        for the lock: removed again when the run stops before writing anything in it."""
        self._adopted = [Path(folder)]

    def acquire(self) -> None:
        """Take the folder, or raise :class:`MlcoreError` naming the run that holds it."""
        if self._fd is not None:
            return
        self._made = _make_folder(self.folder) + self._adopted
        try:
            fd, stale = self._take()
        except BaseException:
            self._remove_made()
            raise
        self._fd = fd
        _held.add(fd)
        if stale is not None:
            who = _who(stale) if stale else "a process that died while creating it"
            warnings.warn(f"output_dir {str(self.folder)!r}: took over the lock left by {who}, "
                          f"which no longer runs (killed or crashed without cleaning up)", stacklevel=2)

    def close(self) -> None:
        """Give the folder back: remove ``.lock`` (if it is still this lock's file) and
        drop the flock. Safe to call when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _held.discard(fd)
        try:
            if _same_file(fd, self.path):
                os.unlink(self.path)  # before the flock goes: a waiting run then sees the file gone
        except OSError:
            pass
        finally:
            os.close(fd)
        self._remove_made()

    release = close

    def _remove_made(self) -> None:
        """Remove the folders created for the lock while they are empty (a run that
        stopped before writing anything leaves no folder behind)."""
        made, self._made = self._made, []
        for p in made:  # deepest first; stops at the first that is not empty
            try:
                p.rmdir()
            except OSError:
                break

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- taking it -----------------------------------------------------------------------
    def _take(self) -> tuple[int, dict | None]:
        """The lock file's descriptor (flock held, JSON written) and the stale lock's
        content when one was taken over."""
        stale: dict | None = None  # the content of a stale lock taken over ({} when it was empty)
        give_up_at: float | None = None  # when an unsettled lock is judged as it stands
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                now = time.monotonic()
                verdict, info = self._judge(give_up=give_up_at is not None and now >= give_up_at)
                if verdict == "held":
                    raise MlcoreError(self._in_use(info)) from None
                if verdict == "removed":
                    stale = info or {}
                elif verdict == "unsettled":
                    give_up_at = give_up_at if give_up_at is not None else now + SETTLE_S
                    time.sleep(0.05)
                continue  # removed, gone meanwhile, or unsettled: try to create it again
            except OSError as exc:
                raise MlcoreError(f"cannot write to output_dir {str(self.folder)!r}: "
                                  f"{exc.strerror or exc}") from exc
            try:
                # a run looking at the fresh file holds its flock for a moment: wait for it
                _try_flock(fd, wait=True)  # (None: no flock here, the file alone is the lock)
                os.write(fd, json.dumps(_identity()).encode("utf-8"))
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                raise
            if not _same_file(fd, self.path):  # judged stale while still empty, and removed: again
                os.close(fd)
                continue
            return fd, stale

    def _judge(self, give_up: bool) -> tuple[str, dict | None]:
        """Look at the existing lock file: ``held`` (its process runs), ``removed`` (it was
        stale, and is gone now), ``gone`` (it went meanwhile), or ``unsettled``: empty (its
        creator is writing it, or died doing so) or flock-held under a dead pid (a run
        taking it over holds it for a moment). With ``give_up`` (unsettled for
        ``SETTLE_S``), an empty unlocked file is stale and a held one is held."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return "gone", None
        except OSError:
            try:  # a folder we may read but not write: we can still say who holds it
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return "gone", None
        try:
            locked = _try_flock(fd)  # True: ours now; False: another process holds it; None: no flock here
            info = _read_info(fd)
            if not _same_file(fd, self.path):
                return "gone", None  # replaced or removed since we opened it
            if locked is False:
                unsettled = info is None or _pid_gone(info)
                return ("unsettled" if unsettled and not give_up else "held"), info
            if info is None:
                if not give_up and _age(fd) < SETTLE_S:
                    return "unsettled", None
            elif locked is None and not _pid_gone(info):
                return "held", info
            # stale. With flock, the old file's flock is ours now: no other run removes it too
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                return "gone", None
            except OSError as exc:
                raise MlcoreError(f"output_dir {str(self.folder)!r} holds the stale lock of "
                                  f"{_who(info) if info else 'a process that died'}, and it cannot be "
                                  f"removed: {exc.strerror or exc}") from exc
            return "removed", info
        finally:
            os.close(fd)

    def _in_use(self, info: dict | None) -> str:
        head = f"output_dir {str(self.folder)!r} is in use by another training run"
        who = f": {_who(info)}" if info else " (its lock file names no process yet)"
        body = ("; two runs in one folder would overwrite each other's checkpoints. Wait for it to end, "
                "stop it, or give this run another output_dir (--set output_dir=...)")
        if info is not None and _pid_gone(info):
            body += (". Its process no longer runs but the lock is still held, by a process it started; "
                     "once that one ends, run again")
        elif info is not None and info.get("host") != socket.gethostname():
            body += f". If that run is known to be gone, delete {str(self.path)!r}"
        return head + who + body


def _identity() -> dict:
    argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"), "command": shlex.join(argv)}


def _who(info: dict) -> str:
    return (f"process {info.get('pid')} on host {info.get('host')!r} (started {info.get('started')}: "
            f"{info.get('command')})")


def _read_info(fd: int) -> dict | None:
    try:
        data = os.pread(fd, 1 << 16, 0)
        info = json.loads(data.decode("utf-8")) if data else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None


def _pid_gone(info: dict) -> bool:
    """True when the lock's process is known not to exist: same host, no such pid."""
    if info.get("host") != socket.gethostname():
        return False
    pid = info["pid"]
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, another user's
        return False
    return False


def _try_flock(fd: int, wait: bool = False) -> bool | None:
    """True: flock taken; False: another process holds it; None: no flock here. With
    ``wait``, until the holder lets go."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        return None  # ENOLCK, EOPNOTSUPP, EBADF (read-only on NFS), …
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _age(fd: int) -> float:
    try:
        return time.time() - os.fstat(fd).st_mtime
    except OSError:
        return 0.0


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` (and missing parents); the ones created, deepest first."""
    made, p = [], folder
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlcoreError(f"cannot write to output_dir {str(folder)!r}: {exc.strerror or exc}") from exc
    return made
