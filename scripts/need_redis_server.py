"""Make sure a Redis server answers, run a command against it, stop what we started.

Order: ``REDIS_URL`` if set; else 127.0.0.1:6379 if something answers PING there; else a
throwaway ``redis-server`` on a free loopback port (Debian's package is installed first when
the binary is absent and we run as root). Under ``CI=true`` a missing server is an error:
the suite never skips for lack of one.

Usage: ``python scripts/need_redis_server.py [--install-only] [-- command ...]``
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def _ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _ensure_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("redis-server not found: installing Debian's redis-server", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "redis-server"],
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str]) -> int:
    install_only = "--install-only" in argv
    binary = _ensure_binary()
    if install_only:
        if binary is None:
            print("redis-server is not installed; tests that start their own fail", file=sys.stderr)
            return 1 if os.environ.get("CI") == "true" else 0
        return 0
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    env = dict(os.environ)
    proc: subprocess.Popen[bytes] | None = None
    workdir = None
    if not env.get("REDIS_URL"):
        if _ping("127.0.0.1", 6379):
            env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
        elif binary is not None:
            port = _free_port()
            workdir = tempfile.mkdtemp(prefix="sdk-redis-")
            proc = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    workdir,
                ],
                stdout=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while not _ping("127.0.0.1", port):
                if time.monotonic() > deadline or proc.poll() is not None:
                    print("throwaway redis-server did not start", file=sys.stderr)
                    proc.kill()
                    return 1
                time.sleep(0.05)
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            print(f"started throwaway redis-server on port {port}", file=sys.stderr)
        else:
            print("no Redis server answers and none could be started", file=sys.stderr)
            if env.get("CI") == "true":
                return 1
    print(f"REDIS_URL={env.get('REDIS_URL', '(none)')}", file=sys.stderr)
    try:
        return subprocess.call(command, env=env) if command else 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
