"""sd_notify against a real AF_UNIX datagram socket created by the test."""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
from pathlib import Path

import pytest

from edged.sdnotify import (
    SystemdNotifier,
    monotonic_usec,
    socket_address,
    strip_notify_env,
)

try:
    from tests.systemd_helpers import NotifySocketReceiver
except ModuleNotFoundError:  # tests/unit is not a package and the repo root is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.systemd_helpers import NotifySocketReceiver

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="AF_UNIX/Linux")


def _is_ready(m: dict[str, str]) -> bool:
    return m.get("READY") == "1"


def test_messages_arrive_on_a_path_socket() -> None:
    with NotifySocketReceiver() as rx:
        env = rx.environ()
        notifier = SystemdNotifier(env)
        assert notifier.enabled

        assert notifier.ready("model yolov5n/static, 29.8 fps")
        assert notifier.watchdog()
        assert notifier.status("29.9 fps, variant static")
        before = monotonic_usec()
        assert notifier.reloading()
        assert notifier.stopping("draining")
        notifier.close()

        ready = rx.wait_for(_is_ready, timeout=5)
        assert ready["STATUS"] == "model yolov5n/static, 29.8 fps"
        assert ready.sender_pid == os.getpid()
        rx.wait_for(lambda m: m.get("WATCHDOG") == "1", timeout=5)
        rx.wait_for(lambda m: m.get("STATUS") == "29.9 fps, variant static", timeout=5)
        reload_msg = rx.wait_for(lambda m: m.get("RELOADING") == "1", timeout=5)
        # systemd >= 253 rejects RELOADING=1 without a current CLOCK_MONOTONIC timestamp.
        assert before <= int(reload_msg["MONOTONIC_USEC"]) <= monotonic_usec()
        stop = rx.wait_for(lambda m: m.get("STOPPING") == "1", timeout=5)
        assert stop["STATUS"] == "draining"
        order = [next(iter(m)) for m in rx.messages]
        assert order == ["READY", "WATCHDOG", "STATUS", "RELOADING", "STOPPING"]


def test_abstract_namespace_socket() -> None:
    with NotifySocketReceiver(abstract=True) as rx:
        assert rx.address.startswith("@")
        notifier = SystemdNotifier(rx.environ())
        assert notifier.ready()
        rx.wait_for(_is_ready, timeout=5)


def test_status_is_kept_on_one_line() -> None:
    with NotifySocketReceiver() as rx:
        SystemdNotifier(rx.environ()).status("line one\nREADY=1")
        msg = rx.wait_for(lambda m: "STATUS" in m, timeout=5)
        assert msg["STATUS"] == "line one READY=1"
        assert "READY" not in msg


def test_noop_without_notify_socket() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.watchdog_interval() is None


def test_send_failure_does_not_raise(tmp_path) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled
    assert notifier.ready() is False  # nobody listening: logged, not raised
    assert notifier.watchdog() is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@abc", b"\0abc"),
        ("relative/path", None),
        ("vsock:2:1234", None),
    ],
)
def test_socket_address(value: str | None, expected: object) -> None:
    assert socket_address(value) == expected


def test_environment_is_consumed_so_children_cannot_notify() -> None:
    env = {
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/usr/bin",
    }
    notifier = SystemdNotifier(env)
    assert env == {"PATH": "/usr/bin"}
    assert notifier.enabled
    assert notifier.watchdog_interval() == 15.0


def test_environment_can_be_kept() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify"}
    SystemdNotifier(env, unset_environment=False)
    assert env == {"NOTIFY_SOCKET": "/run/systemd/notify"}


def test_strip_notify_env() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "2", "HOME": "/h"}
    assert strip_notify_env(env) == {"HOME": "/h"}
    assert "NOTIFY_SOCKET" in env  # the input is not modified


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "self"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "other"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    pids = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}
    env = {k: pids.get(v, v) for k, v in env.items()}
    assert SystemdNotifier(env).watchdog_interval() == expected


def _child_reports_env(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put({k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC")})


def test_spawned_children_do_not_inherit_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    with NotifySocketReceiver() as rx:
        for key, value in rx.environ(watchdog_usec=1_000_000).items():
            monkeypatch.setenv(key, value)
        notifier = SystemdNotifier()  # default: reads and cleans os.environ
        assert "NOTIFY_SOCKET" not in os.environ
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_reports_env, args=(queue,))
        child.start()
        try:
            assert queue.get(timeout=60) == {"NOTIFY_SOCKET": None, "WATCHDOG_USEC": None}
        finally:
            child.join(timeout=30)
        assert notifier.ready()
        rx.wait_for(_is_ready, timeout=5)


def test_datagram_is_a_single_send() -> None:
    """systemd reads exactly one datagram per notification: fields must not be split."""
    with NotifySocketReceiver() as rx:
        SystemdNotifier(rx.environ()).ready("ok")
        msg = rx.wait_for(_is_ready, timeout=5)
        assert msg.raw == b"READY=1\nSTATUS=ok"
        assert len(rx.messages) == 1


def test_closed_socket_is_reopened() -> None:
    with NotifySocketReceiver() as rx:
        notifier = SystemdNotifier(rx.environ())
        notifier.watchdog()
        notifier.close()
        notifier.watchdog()
        rx.wait_for_count(lambda m: "WATCHDOG" in m, 2, timeout=5)


def test_receiver_rejects_nothing_it_did_not_get() -> None:
    with NotifySocketReceiver() as rx, pytest.raises(TimeoutError, match="0/1"):
        rx.wait_for(_is_ready, timeout=0.2)
    # The receiver is a real socket: a plain sendto from anyone reaches it.
    with NotifySocketReceiver() as rx:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1", rx.address)
        rx.wait_for(_is_ready, timeout=5)
