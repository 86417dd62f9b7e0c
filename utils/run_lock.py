"""One run per output directory: an exclusive lock file inside it that names its holder.

Two runs writing one output_dir interleave their checkpoints, logs and state. `hold_output_dir(path)` creates
`path/.run.lock` holding the host, the pid, the process's identity (boot id and start time, so that a reused
pid is not mistaken for the holder) and since when. The file appears complete or not at all: its text is
written to a temporary file of its own that is then hard-linked to the lock name, and link(2) fails with EEXIST
atomically on local and NFS file systems alike (where hard links are unsupported, O_CREAT|O_EXCL is used). A
second run stops with an InputError naming the holder.

The lock is removed on a normal exit, an exception, SIGINT and SIGTERM (`interrupt.exit_on_signals` turns
those into an orderly exit). A lock left by a process that is gone (kill -9, a crash) on this host is taken
over with a warning; one held from another host cannot be checked from here, so the message names the file
to delete once that run is known to be over.

In a multi-process run only the process that owns output_dir takes the lock (rank 0); the others pass
owner=False. Code that lists an output directory (an emptiness check) ignores names starting with LOCK_NAME.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Iterator, Optional

from utils import interrupt
from utils.errors import InputError

LOCK_NAME = ".run.lock"
_ATTEMPTS = 5
_UNREADABLE_WAIT_S = 0.2      # a lock being created with O_EXCL is empty for an instant


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as written in the lock file."""

    host: str
    pid: int
    identity: Optional[str]       # "boot_id:start_ticks" on Linux, None where /proc is unavailable
    since: str
    command: str

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, since {self.since}: {self.command}"

    def is_gone(self) -> bool:
        """Whether the holder is known to be dead: on this host, and its pid no longer runs that process."""
        if self.host != socket.gethostname():
            return False
        if not _pid_alive(self.pid):
            return True
        return self.identity is not None and _process_identity(self.pid) not in (None, self.identity)


def _pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (killed, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is None or stat[0] != "Z"


def _proc_stat(pid: int) -> Optional[list[str]]:
    """The fields of /proc/PID/stat after "pid (comm)" (state first), None without /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_identity(pid: int) -> Optional[str]:
    stat = _proc_stat(pid)
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            boot_id = handle.read().strip()
    except OSError:
        return None
    if stat is None or len(stat) < 20:
        return None
    return f"{boot_id}:{stat[19]}"             # starttime, field 22 of proc_pid_stat(5)


def _myself() -> Holder:
    return Holder(host=socket.gethostname(), pid=os.getpid(), identity=_process_identity(os.getpid()),
                  since=time.strftime("%Y-%m-%d %H:%M:%S"), command=" ".join([sys.executable, *sys.argv]))


class RunLock:
    """The lock of one output directory; `hold_output_dir` is the usual way to take it."""

    def __init__(self, output_dir: os.PathLike | str):
        self.output_dir = os.fspath(output_dir)
        self.path = os.path.join(self.output_dir, LOCK_NAME)
        self._text: Optional[str] = None

    def acquire(self) -> None:
        text = json.dumps(asdict(_myself())) + "\n"
        for _ in range(_ATTEMPTS):
            try:
                os.makedirs(self.output_dir, exist_ok=True)
                created = self._create(text)
            except OSError as err:
                raise InputError(f"cannot create the lock file of this output directory ({err.strerror})",
                                 self.output_dir) from None
            if created:
                self._text = text
                return
            found = self._read_holder()
            if found is None:
                continue                                   # released meanwhile: try again
            holder, held_text = found
            if not holder.is_gone():
                raise InputError(self._busy_message(holder), self.output_dir)
            print(f"warning: {self.output_dir}: taking over the lock of a run that is gone "
                  f"({holder.describe()})", file=sys.stderr, flush=True)
            self._break(held_text)
        raise InputError("could not take the lock: other runs keep taking it", self.path)

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        if self._text is None:
            return
        with contextlib.suppress(OSError):
            with open(self.path, encoding="utf-8") as handle:
                ours = handle.read() == self._text
            if ours:
                os.unlink(self.path)
        self._text = None

    def _busy_message(self, holder: Holder) -> str:
        message = f"output directory is in use by another run ({holder.describe()})"
        if holder.host != socket.gethostname():
            return (f"{message}; wait for it to end or choose another output directory (if that run is over, "
                    f"delete {self.path})")
        return f"{message}; wait for it to end or choose another output directory"

    def _create(self, text: str) -> bool:
        """Put `text` under the lock name unless a lock exists; True when it is ours."""
        fd, staging = tempfile.mkstemp(prefix=f"{LOCK_NAME}.{uuid.uuid4().hex}.", dir=self.output_dir)
        try:
            os.chmod(staging, 0o644)                       # other users' runs must be able to read the holder
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(staging, self.path)
                return True
            except FileExistsError:
                # NFS: a retransmitted link whose first reply was lost reports EEXIST although it worked.
                return os.stat(staging).st_nlink == 2
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
            return self._create_exclusive(text)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)

    def _create_exclusive(self, text: str) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _read_holder(self) -> Optional[tuple[Holder, str]]:
        """The holder of the existing lock and the file's text; None when the lock vanished meanwhile."""
        deadline = time.monotonic() + _UNREADABLE_WAIT_S
        while True:
            try:
                with open(self.path, encoding="utf-8") as handle:
                    text = handle.read()
            except FileNotFoundError:
                return None
            except (OSError, UnicodeDecodeError) as err:
                raise InputError(f"cannot read the lock file ({err}); if no run is using this output directory, "
                                 "delete it", self.path) from None
            try:
                fields = json.loads(text)
                return Holder(str(fields["host"]), int(fields["pid"]), fields.get("identity"),
                              str(fields["since"]), str(fields.get("command", ""))), text
            except (ValueError, KeyError, TypeError):
                if time.monotonic() > deadline:
                    raise InputError("the lock file does not name its holder; if no run is using this output "
                                     "directory, delete it", self.path) from None
                time.sleep(0.02)

    def _break(self, held_text: str) -> None:
        """Remove the stale lock whose text is `held_text`, unless another run replaced it meanwhile."""
        aside = f"{self.path}.stale.{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return                                         # someone else removed it first
        try:
            with open(aside, encoding="utf-8") as handle:
                moved = handle.read()
            if moved != held_text:                         # a live lock taken since we read it: put it back
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)
        finally:
            os.unlink(aside)


@contextlib.contextmanager
def hold_output_dir(output_dir: os.PathLike | str, owner: bool = True) -> Iterator[Optional[str]]:
    """Hold the lock of `output_dir` inside the block (yields the lock file's path; None when not owner)."""
    if not owner:
        yield None
        return
    lock = RunLock(output_dir)
    with interrupt.exit_on_signals():
        lock.acquire()
        try:
            yield lock.path
        finally:
            lock.release()
