"""Crash points for the tests that prove a job survives kill -9 anywhere in it.

`crash_point("retrain:registered")` does nothing unless FMLOOP_CRASH_AT names that point, in which
case the process kills itself with SIGKILL on the spot: no cleanup, no finally blocks, exactly
what a power cut or the OOM killer does. The tests set the variable in a child process and then
check that what is stored (registry aliases, run dirs, the feedback store) is still whole.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("FMLOOP_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
