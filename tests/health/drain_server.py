"""A real server for the drain test: uvicorn serving a `HealthApp` that drains on SIGTERM.

Run as ``python -m tests.health.drain_server PORT DRAIN_DELAY``.
"""

from __future__ import annotations

import signal
import sys

import uvicorn

from sysdesign_kit.health import CallableCheck, HealthApp, HealthRegistry


def main() -> None:
    port, delay = int(sys.argv[1]), float(sys.argv[2])
    registry = HealthRegistry(
        [CallableCheck("self", lambda: True, in_thread=False)],
        drain_signals=[signal.SIGTERM],
        drain_delay=delay,
    )
    uvicorn.run(HealthApp(registry), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
