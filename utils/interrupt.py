"""SIGINT and SIGTERM for long runs: finish the step, save, and exit 130/143 without a traceback.

A training loop runs inside `StopOnSignal` and looks at `stop.requested` after each optimizer step. The first
SIGINT or SIGTERM only sets that flag: the step in flight completes, so the checkpoint written next resumes
exactly, and `stop.exit()` then leaves with 128 + the signal number, as a shell reports a killed process. A
second signal leaves at once. Leaving is a SystemExit raised in the main thread, never os._exit: `finally`
blocks and context managers still run, so the output-directory lock is released and half-written files are
removed, and Python prints no traceback for it.

`exit_on_signals` is the plain form for code without a loop to finish (an entry holding a lock while it
converts or predicts): the first signal leaves at once, the same way.

Messages go straight to file descriptor 2: a handler runs between two bytecodes of the main thread, possibly in
the middle of a write to sys.stderr (a progress bar), where a second buffered write would fail.

In a multi-process run every rank must stop after the same step (or the others wait forever in the next
collective): combine `requested` across ranks, an all-reduce of its maximum, before acting on it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator, NoReturn, Optional, Sequence

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_DEFAULT_HANDLERS = (signal.SIG_DFL, signal.default_int_handler)


class Interrupted(SystemExit):
    """Leaving because of a signal: exit status 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(128 + signum)


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, (text + "\n").encode("utf-8", "replace"))


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def _install(handler: Any, signals: Sequence[int], replace_custom: bool) -> dict[int, Any]:
    """Install `handler` for `signals` (main thread only); return the handlers it replaced.

    An ignored signal stays ignored (a background job started with SIGINT ignored must not start
    catching it); without `replace_custom`, only signals still at their default action are taken.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in signals:
        current = signal.getsignal(signum)
        if current == signal.SIG_IGN or (not replace_custom and current not in _DEFAULT_HANDLERS):
            continue
        previous[signum] = signal.signal(signum, handler)
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        # None: a handler installed outside Python, which Python cannot reinstall; the default is the nearest.
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def exit_on_signals(signals: Sequence[int] = SIGNALS) -> Iterator[None]:
    """Inside, SIGINT/SIGTERM at their default action leave at once through `Interrupted` (clean-up runs).

    Handlers someone else installed (a StopOnSignal around this block) are left alone.
    """
    def leave(signum: int, frame: Any) -> NoReturn:
        _say(f"interrupted by {_name(signum)}")
        raise Interrupted(signum)

    previous = _install(leave, signals, replace_custom=False)
    try:
        yield
    finally:
        _restore(previous)


class StopOnSignal:
    """`with StopOnSignal() as stop:` ... after each step: `if stop.requested: save(); stop.exit()`."""

    def __init__(self, signals: Sequence[int] = SIGNALS):
        self.signals = tuple(signals)
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "StopOnSignal":
        self._previous = _install(self._handle, self.signals, replace_custom=True)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        _restore(self._previous)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            _say(f"{_name(signum)} again: stopping at once, without saving")
            raise Interrupted(signum)
        self.signum = signum
        _say(f"received {_name(signum)}: finishing the current step, then saving a checkpoint "
             "(send it again to stop at once)")

    def exit(self, resume_hint: str = "run the same command again to resume") -> NoReturn:
        """Leave after the checkpoint is written: exit status 128 + the first signal's number."""
        if self.signum is None:
            raise RuntimeError("StopOnSignal.exit() without a signal")
        _say(f"stopped by {_name(self.signum)}; {resume_hint}")
        raise Interrupted(self.signum)
