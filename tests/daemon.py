"""A test harness that runs the real ``edged run`` daemon in a subprocess.

Integration tests use it to drive edged the way an operator does: real processes, real HTTP
scrapes, real ZeroMQ sockets, real signals. Typical use::

    from tests.daemon import Daemon, VIDEO, require

    def test_something(tmp_path):
        with Daemon(tmp_path, "--source", str(require(VIDEO)), "--mode", "lossless") as d:
            d.wait_ready()
            scrape = d.metrics()
            assert scrape.value("edged_frames_total", stage="publish", outcome="ok") > 0
            assert d.stop() == 0          # SIGTERM: drain, exit 0, every stage process gone

What it takes care of:

- free loopback ports for ``--http-port`` and ``--publish``, outside the kernel's ephemeral
  range (see :func:`free_port`; ``--http-port 0`` would work for the daemon but the chosen
  port is not discoverable from outside), a private
  ``--runtime-dir``, and ``--model`` pointing at the shared YOLOv5n unless the caller passes
  ``--model``/``--manifest``/``--config`` or ``model=None``;
- an optional ``config`` mapping written to a YAML file and passed as ``--config`` (for settings
  that have no flag, e.g. ``http.ready_max_age_s``);
- the daemon's stdout and stderr in ``<tmp_path>/daemon.log``; every assertion raised here ends
  with the log's tail, so a failing CI run says what the daemon was doing;
- ``stop()`` checks that the whole process tree is gone (pids collected while it ran), and the
  context manager kills whatever is left (only the daemon's own process group) so a failing test
  never leaks stage processes into the next one.

Everything polls with a deadline (:func:`poll_until`); nothing sleeps blindly.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil
import yaml
import zmq
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.paths import REPO_ROOT, SHARED_DATA, VIDEO, VIDEO_FRAMES, YOLOV5N, require

__all__ = [
    "REPO_ROOT",
    "SHARED",
    "VIDEO",
    "VIDEO_FRAMES",
    "YOLOV5N",
    "Daemon",
    "DaemonError",
    "Scrape",
    "free_port",
    "http_get",
    "poll_until",
    "require",
    "terminate",
]

SHARED = SHARED_DATA
T = TypeVar("T")

# Ports handed out in this test session; a port is never handed out twice, so two daemons
# started back to back cannot race for the same one.
_issued_ports: set[int] = set()
_LOWEST_PORT = 10_000


def _ephemeral_ports() -> range:
    """The kernel's range for ports it picks itself (bind to port 0, connect without bind)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago and was not handed out before.

    The port is bound later by another process (a daemon, FFmpeg, Mosquitto), and until then
    anything may take it. Taken from outside the kernel's ephemeral range, only a program that
    asks for that very number can: an ephemeral port could go to any outgoing connection on
    the machine meanwhile (each HTTP probe of a starting daemon makes one), and the bind
    then fails with "address in use".
    """
    ephemeral = _ephemeral_ports()
    pool = [p for p in range(_LOWEST_PORT, 65536) if p not in ephemeral]
    rng = random.SystemRandom()  # not the test's seeded random: sessions must not agree
    for port in (rng.choice(pool) for _ in range(200)) if pool else ():
        if port in _issued_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:  # in use (or in TIME_WAIT): another
                continue
        _issued_ports.add(port)
        return port
    for _ in range(50):  # no room outside the ephemeral range on this machine
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _issued_ports:
            _issued_ports.add(port)
            return port
    raise RuntimeError("no fresh free port found")


def poll_until(
    check: Callable[[], T],
    timeout: float,
    message: str | Callable[[], str] = "condition not met",
    interval: float = 0.1,
) -> T:
    """Call ``check`` until it returns something truthy; return that, or fail after ``timeout``.

    ``message`` (or its result, when callable) is the AssertionError's text; exceptions from
    ``check`` propagate, so a crash is not mistaken for "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:.0f}s)")
        time.sleep(interval)


def terminate(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, and SIGKILL if ``proc`` is still there after ``timeout`` (a helper server)."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors such as 503 are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass(frozen=True)
class Scrape:
    """One parsed ``/metrics`` exposition.

    Sample names are the exposed ones (``edged_frames_total``, ``..._bucket``, ``..._count``);
    family names are prometheus_client's (``edged_frames``, without ``_total``).
    """

    families: dict[str, Any]
    text: str

    @classmethod
    def parse(cls, text: str) -> Scrape:
        return cls({f.name: f for f in text_string_to_metric_families(text)}, text)

    def samples(self, name: str, **labels: str) -> list[Sample]:
        """Every sample called ``name`` whose labels include ``labels``."""
        return [
            s
            for family in self.families.values()
            for s in family.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The value of exactly one sample; AssertionError when none or several match."""
        found = self.samples(name, **labels)
        if len(found) != 1:
            raise AssertionError(
                f"expected one sample {name}{labels}, found {len(found)}: {found[:5]}"
            )
        return found[0].value

    def total(self, name: str, **labels: str) -> float:
        """Sum over every matching sample (0 when none match)."""
        return sum(s.value for s in self.samples(name, **labels))

    def names(self) -> set[str]:
        """All sample names present."""
        return {s.name for family in self.families.values() for s in family.samples}


class DaemonError(AssertionError):
    """The daemon did not do what the test needed; the message ends with its log tail."""


class Daemon:
    """``python -m edged.cli run ...`` in a subprocess, with its ports, logs and process tree.

    Args:
        tmp_path: a per-test directory (runtime dir, log, generated config go there).
        *args: extra ``edged run`` arguments (``--source``, ``--mode``, ``--loop`` ...).
        model: the ``--model`` passed unless ``args`` choose a model or config file themselves
            or ``config`` has a ``model`` section; ``None`` passes none.
        config: written to ``tmp_path/edged.yaml`` and passed as ``--config`` when given.
        env: extra environment variables for the daemon.
        log_level: ``--log-level`` (INFO keeps the log useful in failure messages).
    """

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        model: Path | str | None = YOLOV5N,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.tmp_path = Path(tmp_path)
        self.tmp_path.mkdir(parents=True, exist_ok=True)
        self.runtime_dir = self.tmp_path / "run"
        self.log_path = self.tmp_path / "daemon.log"
        self.http_port = free_port()
        self.publish_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.publish_endpoint = f"tcp://127.0.0.1:{self.publish_port}"
        self.control_endpoint = f"ipc://{self.runtime_dir}/control.sock"
        self.config_path: Path | None = None
        argv = list(args)
        # The caller's own model choice wins: flags, their own config file, or a model section.
        chooses_model = bool({"--model", "-m", "--manifest", "--config", "-c"} & set(argv))
        if config is not None:
            chooses_model = chooses_model or "model" in config
            self.config_path = self.tmp_path / "edged.yaml"
            self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
            argv += ["--config", str(self.config_path)]
        if model is not None and not chooses_model:
            argv += ["--model", str(require(Path(model)))]
        argv += [
            "--runtime-dir", str(self.runtime_dir),
            "--http-host", "127.0.0.1",
            "--http-port", str(self.http_port),
            "--publish", self.publish_endpoint,
            "--log-level", log_level,
        ]  # fmt: skip
        self.argv = [sys.executable, "-m", "edged.cli", "run", *argv]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._tree: dict[int, psutil.Process] = {}
        self._log_file: Any = None
        self._sockets: list[zmq.Socket] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Daemon:
        """Launch the daemon (returns at once; see :meth:`wait_ready`)."""
        assert self.proc is None, "already started"
        self._log_file = self.log_path.open("wb")
        # A session of its own: SIGINT from the terminal running pytest does not hit the daemon,
        # and cleanup can signal exactly this daemon's process group and nothing else.
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._tree[self.proc.pid] = psutil.Process(self.proc.pid)
        return self

    def __enter__(self) -> Daemon:
        return self.start() if self.proc is None else self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        for sock in self._sockets:
            sock.close(0)
        self._sockets.clear()
        if self.running:
            try:
                self.stop(timeout=20.0)
            except AssertionError:
                if exc_type is None:  # don't hide the test's own failure behind ours
                    raise
            finally:
                self.kill()
        else:
            self.kill()  # stray stage processes of a daemon that died on its own
        if self._log_file is not None:
            self._log_file.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def processes(self) -> list[psutil.Process]:
        """The supervisor and every descendant alive now; remembered for :meth:`stop`."""
        if not self.running:
            return []
        root = self._tree[self.pid]
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in root.children(recursive=True):
                self._tree.setdefault(child.pid, child)
        return [p for p in self._tree.values() if _alive(p)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0, group: bool = False) -> int:
        """Signal the daemon, wait for it to exit, check the whole tree is gone; the exit code.

        Args:
            sig: the signal (SIGTERM drains; SIGINT likewise; SIGKILL for crash tests).
            timeout: how long the supervisor and then its children may take.
            group: signal the whole process group (like Ctrl-C in a terminal or systemd's
                KillMode=mixed at the end) instead of the supervisor only.
        """
        assert self.proc is not None, "not started"
        self.processes()  # refresh the tree: stages restarted since the last look count too
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            what = f"edged did not exit within {timeout:.0f}s of {signal.Signals(sig).name}"
            raise DaemonError(self._with_log(what)) from None
        deadline = time.monotonic() + timeout
        left = [p for p in self._tree.values() if _alive(p)]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [p for p in left if _alive(p)]
        if left:
            names = ", ".join(f"{_name(p)} (pid {p.pid})" for p in left)
            raise DaemonError(self._with_log(f"edged exited ({code}) but left processes: {names}"))
        return code

    def kill(self) -> None:
        """SIGKILL whatever is left of this daemon's own process tree and group (cleanup)."""
        procs = [p for p in self._tree.values() if _alive(p)]
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5.0)
        psutil.wait_procs(procs, timeout=5.0)

    # -- logs ------------------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _with_log(self, message: str) -> str:
        return f"{message}\n--- edged log tail ({self.log_path}) ---\n{self.log_tail()}"

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Wait until ``text`` appears in the daemon's log."""
        poll_until(
            lambda: text in self.log_text() or self._check_alive(),
            timeout,
            lambda: self._with_log(f"{text!r} never appeared in the log"),
        )

    def _check_alive(self) -> bool:
        """False while running; raises with the log when the daemon has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise DaemonError(self._with_log(f"edged exited with code {self.proc.returncode}"))
        return False

    # -- HTTP ------------------------------------------------------------------------------------

    # A request's timeout only bounds a hung server: a busy machine may take seconds to answer,
    # and a probe that gave up on a slow answer read as "not answering" (status 0).
    def get(self, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
        """(status, body) of GET ``path`` on the daemon's HTTP endpoint."""
        return http_get(self.base_url + path, timeout)

    def probe(self, path: str = "/readyz") -> tuple[int, str]:
        """(status, reason) of /readyz or /healthz; (0, "...") while nothing listens yet."""
        try:
            status, body = self.get(path, timeout=10.0)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            return 0, f"not answering: {exc}"
        try:
            return status, json.loads(body)["reason"]
        except (ValueError, KeyError):
            return status, body.decode(errors="replace")

    def wait_status(self, path: str, status: int, timeout: float = 60.0,
                    reason: str = "") -> str:  # fmt: skip
        """Wait until ``path`` answers ``status`` (with ``reason`` in its text, when given: a
        503 may first come for another reason); returns the reason it gave."""
        last: list[tuple[int, str]] = []

        def check() -> str | None:
            self._check_alive()
            got = self.probe(path)
            last[:] = [got]
            return got[1] if got[0] == status and reason in got[1] else None

        def failure() -> str:
            wanted = f"{status} ({reason})" if reason else f"{status}"
            return self._with_log(f"{path} never answered {wanted}; last answer: {last}")

        return poll_until(check, timeout, failure, interval=0.2)

    def wait_ready(self, timeout: float = 90.0) -> str:
        """Wait for /readyz 200 (model loaded, frames being published); returns its reason."""
        reason = self.wait_status("/readyz", 200, timeout)
        self.processes()
        return reason

    def metrics(self) -> Scrape:
        """Scrape /metrics over real HTTP and parse it with prometheus_client's parser."""
        status, body = self.get("/metrics")
        if status != 200:
            raise DaemonError(self._with_log(f"/metrics answered {status}"))
        return Scrape.parse(body.decode())

    def wait_metric(
        self,
        name: str,
        predicate: Callable[[float], bool],
        timeout: float = 60.0,
        **labels: str,
    ) -> Scrape:
        """Scrape until the sum of ``name{labels}`` satisfies ``predicate``; that scrape."""
        seen: list[float] = []

        def check() -> Scrape | None:
            self._check_alive()
            scrape = self.metrics()
            seen[:] = [scrape.total(name, **labels)]
            return scrape if predicate(seen[0]) else None

        def failure() -> str:
            return self._with_log(f"{name}{labels} never satisfied the condition; last: {seen}")

        return poll_until(check, timeout, failure, interval=0.25)

    def wait_published(self, frames: int, timeout: float = 120.0) -> Scrape:
        """Wait until at least ``frames`` frames went out (end-to-end histogram count)."""
        return self.wait_metric(
            "edged_end_to_end_latency_seconds_count", lambda v: v >= frames, timeout
        )

    # -- ZeroMQ ----------------------------------------------------------------------------------

    def subscriber(self, topic: bytes = b"detections.") -> zmq.Socket:
        """A SUB socket connected to the daemon's publisher (closed with the daemon).

        Safe to call before the daemon is ready: ZeroMQ connects when the publisher binds.
        The receive high-water mark is unlimited so a test that reads late loses nothing.
        """
        sock = zmq.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SUBSCRIBE, topic)
        sock.connect(self.publish_endpoint)
        self._sockets.append(sock)
        return sock

    @staticmethod
    def receive(sock: zmq.Socket, timeout: float = 10.0) -> tuple[bytes, dict[str, Any]] | None:
        """One (topic, decoded message) from a subscriber, or None after ``timeout``."""
        from edged.publish.schema import decode_payload

        if not sock.poll(int(timeout * 1000)):
            return None
        topic, payload = sock.recv_multipart()
        return topic, decode_payload(payload)

    @staticmethod
    def drain(sock: zmq.Socket) -> list[dict[str, Any]]:
        """Every message waiting on a subscriber now, decoded, without blocking."""
        from edged.publish.schema import decode_payload

        messages = []
        while sock.poll(0):
            _topic, payload = sock.recv_multipart()
            messages.append(decode_payload(payload))
        return messages

    # -- control ---------------------------------------------------------------------------------

    def ctl(self, command: str, variant: str | None = None, timeout: float = 60.0) -> dict:
        """One control request (``status``, ``swap``, ``reload``) over the ipc socket."""
        from edged.control import call

        self._check_alive()
        return call(self.control_endpoint, command, variant, timeout)


class Collector(threading.Thread):
    """Reads every detections message of a daemon in the background, until stopped (for sources
    that loop, where there is no end of stream to wait for)."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon=True)
        self.sub = daemon.subscriber()
        self.messages: list[dict] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            got = Daemon.receive(self.sub, timeout=0.2)
            if got is not None:
                self.messages.append(got[1])

    def stop(self) -> list[dict]:
        """Every message read, once the thread has ended."""
        self.stopped.set()
        self.join(10)
        assert not self.is_alive()
        return self.messages

    def newest_seq(self) -> int:
        return self.messages[-1]["seq"] if self.messages else -1


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie has exited; its parent just has not reaped it)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _name(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline()[-3:]) or proc.name()
    except psutil.Error:
        return "?"
