"""What reports and local servers ask of the machine: the CPU's name (beside every measured figure)
and a free loopback port."""

from __future__ import annotations

import platform
import socket
import subprocess


def cpu_name() -> str:
    """The CPU model as lscpu names it (e.g. 'AMD EPYC'), else what the platform module knows."""
    try:
        listing = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        listing = ""
    for line in listing.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
