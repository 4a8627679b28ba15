"""Camera streams for the camera-kill run: the video served by a real FFmpeg on loopback.

``ffmpeg -re -stream_loop -1 -i VIDEO -an -c copy -f mpegts tcp://127.0.0.1:PORT?listen=1``,
one per camera (the stream tests serve theirs with the same command): at the
file's own rate (``-re``), video only (with the file's audio track ``-re`` pauses ~1 s at each
loop), copied, not re-encoded, so the servers cost next to no CPU. FFmpeg serves one client;
killing it drops the connection like a camera losing power.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psutil

# Only bounds a hang (an FFmpeg that exits is seen at once): generous for a loaded CI machine.
LISTEN_TIMEOUT_S = 60.0
_LOWEST_PORT = 10_000
_issued: set[int] = set()  # ports this process has handed out (see free_port)


def ffmpeg_path() -> str | None:
    return shutil.which("ffmpeg")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free a moment ago, outside the kernel's ephemeral range: until FFmpeg binds it
    only a program asking for that very number can take it (an ephemeral port could go to any
    outgoing connection meanwhile), and the killed server gets it back on restart."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    pool = [p for p in range(_LOWEST_PORT, 65536) if not low <= p <= high and p not in _issued]
    rng = random.SystemRandom()
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, rng.choice(pool or [0])))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        # Every camera's port is picked before any FFmpeg binds one: never hand one out twice.
        _issued.add(port)
        return port
    raise RuntimeError("no free TCP port found")


def serving(pid: int, port: int) -> bool:
    """True once process ``pid`` listens on ``port`` or has accepted a client there.

    FFmpeg's ``listen=1`` closes its listening socket as soon as it accepts: a daemon retrying
    at that moment leaves LISTEN visible for microseconds, so a poll that looked only for LISTEN
    could miss it and wait for ever (CI saw this once). Read from the process's own sockets,
    without connecting: FFmpeg serves the first client, which must be the daemon."""
    try:
        connections = psutil.Process(pid).net_connections("tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return any(
        c.laddr
        and c.laddr.port == port
        and c.status in (psutil.CONN_LISTEN, psutil.CONN_ESTABLISHED)
        for c in connections
    )


def stream_argv(ffmpeg: str, video: str | Path, port: int) -> list[str]:
    """FFmpeg serving ``video`` as a camera would, to the first client of ``port``."""
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-stream_loop", "-1", "-i", str(video),
        "-an", "-c", "copy", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1",
    ]  # fmt: skip


class StreamServer:
    """One camera's stream: start (returns once it listens), kill, start again on the port."""

    def __init__(self, video: str, log_path: Path, port: int | None = None) -> None:
        ffmpeg = ffmpeg_path()
        if ffmpeg is None:
            raise RuntimeError("ffmpeg not installed")
        self.port = port or free_port()
        self.uri = f"tcp://127.0.0.1:{self.port}"
        self.argv = stream_argv(ffmpeg, video, self.port)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> tuple[float, float]:
        """Start FFmpeg and wait until it serves: (monotonic, wall) time it was seen listening
        (a reconnect is timed from there; if the daemon connected before a poll saw LISTEN, from
        the poll that saw the connection, at most one poll late)."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + LISTEN_TIMEOUT_S
        while not serving(self.proc.pid, self.port):
            code = self.proc.poll()
            if code is not None or time.monotonic() > deadline:
                self.stop()
                why = (f"exited with code {code} before listening" if code is not None
                       else f"did not listen within {LISTEN_TIMEOUT_S:.0f} s")  # fmt: skip
                tail = self.log_path.read_text(errors="replace")[-500:]
                raise RuntimeError(f"ffmpeg {why} on {self.uri}: {tail}")
            time.sleep(0.02)
        return time.monotonic(), time.time()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the running FFmpeg (SIGSTOP freezes the stream, connection open)."""
        assert self.proc is not None, "the stream is not running"
        self.proc.send_signal(sig)

    def stop(self) -> None:
        """Kill it: abrupt, like a camera losing power or the network dropping."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
