"""Stopping a sweep's driver on SIGINT (Ctrl-C) or SIGTERM (a job scheduler, ``timeout``): cleanly the
first time, at once the second.

The first signal is recorded and handed to a ``request_stop`` function (for a sweep: Ray Tune's own stop,
which ends its loop, saves its experiment state and stops the trials); the driver then records what it
interrupted and exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM, as shells report them).

A second signal ends the process with ``os._exit``, running no clean-up. That is as safe as killing the
driver, which the sweep survives by design: every file of the results store and every trainer state is
written whole (a temporary name renamed into place, or one object put: ablate.storage), so a process
ending at any instant leaves each of them whole or absent; trial processes die with a local Ray (on a
cluster, with the driver's job), and rows they write meanwhile past their checkpoint are dropped as stale
when the resumed attempt begins. The one thing not written whole is Ray Tune's experiment state (copied
in place): so the exit waits while the stop the first signal asked for is still saving it (until
:meth:`StopSignals.saved`, at most ``SAVE_WAIT_S``; well under a second in practice).
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Callable, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: how long a second signal waits at most for the state save that the first one started
SAVE_WAIT_S = 5.0


def exit_status(signum: int) -> int:
    """The exit status shells give a process ended by ``signum``: 128 + its number."""
    return 128 + signum


class StopSignals:
    """SIGINT and SIGTERM handlers for a ``with`` block run in the main thread.

    The first signal is kept in ``received``, ``notice`` goes to stderr and ``request_stop()`` is called;
    when that returns False (nothing can stop gracefully yet), the signal raises KeyboardInterrupt in the
    main thread, as Python's default SIGINT handler does. A second signal writes ``farewell`` to stderr
    and ends the process (module docstring): at once, or once :meth:`saved` is called when the stop was
    still saving. The previous handlers are restored when the block ends.
    """

    def __init__(self, request_stop: Callable[[], bool], notice: str = "", farewell: str = ""):
        self.request_stop, self.notice, self.farewell = request_stop, notice, farewell
        self.received: Optional[int] = None
        self._saving = False  # a requested stop has not saved its state yet
        self._exit_when_saved: Optional[int] = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> bool:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False

    def saved(self) -> None:
        """The stop that the first signal requested has saved its state: a second signal may end the
        process now (and one that came meanwhile does)."""
        self._saving = False
        if self._exit_when_saved is not None:
            self._exit(self._exit_when_saved)

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            if not self._saving:
                self._exit(signum)
            self._exit_when_saved = signum
            deadline = threading.Timer(SAVE_WAIT_S, self._exit, (signum,))
            deadline.daemon = True
            deadline.start()
            return
        self.received = signum
        self._write(self.notice)
        self._saving = self.request_stop()
        if not self._saving:
            raise KeyboardInterrupt

    def _exit(self, signum: int) -> None:
        self._write(self.farewell)
        os._exit(exit_status(signum))

    @staticmethod
    def _write(text: str) -> None:
        if text:  # os.write: print() may be in the middle of a write that it would re-enter
            os.write(2, f"{text}\n".encode())
