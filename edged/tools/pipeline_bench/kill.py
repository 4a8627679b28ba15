"""``--edged-modes cameras-kill``: one camera's stream dies while the others flow (issue 18).

N cameras, each served by its own FFmpeg on loopback (``streams.py``), in live mode, each held
by ``fps_limit`` so that together they ask half of what inference gives: saturated, the others
would speed up when one camera dies, paced their FPS is their limit and moves only if the loss
disturbs them. Measured from the subscriber side, on the daemon's real detections topics:

1. warm-up: every camera published ``warmup`` frames;
2. ``before``: until the other cameras published a window's frames together;
3. camera 0's FFmpeg is killed; ``during``: until the others published a window's frames again;
4. it starts again on the same port; ``after``: until the others published a window's frames,
   and until camera 0's first frame captured after the restart arrives (or RECONNECT_WAIT_S).

Figures: each camera's FPS in each window, the others' FPS during ÷ before (each and in all),
after ÷ before, and camera 0's reconnect time: from its server listening again to the arrival of
its first frame captured after that (it includes the daemon's backoff and FFmpeg's probing of
the stream on open).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from edged.tools.pipeline_bench.cameras import camera_ids
from edged.tools.pipeline_bench.daemon import daemon_config, launched
from edged.tools.pipeline_bench.measure import CpuWindow, log_tail, percentile_summary
from edged.tools.pipeline_bench.settings import PipelineBenchSettings
from edged.tools.pipeline_bench.streams import StreamServer

CAMERAS_KILL_MODE = "cameras-kill"
KILL_LOAD = 0.5  # all cameras together ask this share of the inference-only FPS
# A LAN camera's settings: the figure is the daemon's reconnect, not a 30 s backoff's.
RECONNECT = {"initial_backoff_s": 0.5, "max_backoff_s": 2.0, "stall_timeout_s": 5.0}
RECONNECT_WAIT_S = 60.0  # after the restart, how long camera 0 may take to publish again
WINDOWS = ("before", "during", "after")
# Unpaced, inference saturates and the others speed up when one camera dies: the < 10 % check
# would fail by construction.
UNPACED = ("cameras-kill needs the inference contender or --realtime-fps to pace the cameras "
           "below capacity")  # fmt: skip


class Arrival(NamedTuple):
    """One detections message as the bench read it."""

    arrived: float  # monotonic, when the bench read it (the reconnect figure only)
    camera: str
    captured: float  # wall time its frame was captured (the message's ``timestamp``)
    published: float  # wall time it was published: the windows count by this (see arrival())


def arrival(message: dict[str, Any], arrived: float) -> Arrival:
    """The message's own capture and publish times: a window counts what the daemon published
    in it, not what the bench happened to read then (a backlog read after a blocking server
    start would look like a burst)."""
    captured = float(message["timestamp"])
    published = captured + float(message["latency_ms"]["end_to_end"]) / 1000
    return Arrival(arrived, str(message["camera_id"]), captured, published)


# -- figures (pure) ---------------------------------------------------------------------------


def kill_fps_limit(realtime_fps: float | None, stream_fps: float, inference_fps: float | None,
                   cameras: int) -> tuple[float | None, bool]:  # fmt: skip
    """Each camera's ``fps_limit`` and whether the cameras are paced below capacity:
    ``--realtime-fps`` when given, else the cameras together at KILL_LOAD of the inference-only
    FPS; None (the stream's own rate) when that is no lower (paced by the stream), or when the
    inference-only FPS was not measured (not paced: see UNPACED)."""
    if realtime_fps:
        return float(realtime_fps), True
    if not inference_fps:
        return None, False
    limit = round(KILL_LOAD * inference_fps / cameras, 2)
    return (limit if limit < stream_fps else None), True


def window_counts(arrivals: list[Arrival], start: float, end: float) -> dict[str, int]:
    """Frames of each camera published in (start, end] (wall time)."""
    counts: dict[str, int] = {}
    for a in arrivals:
        if start < a.published <= end:
            counts[a.camera] = counts.get(a.camera, 0) + 1
    return counts


def window_end(arrivals: list[Arrival], start: float, cameras: list[str],
               quota: int) -> float | None:  # fmt: skip
    """When (publish wall time) ``cameras`` together had published ``quota`` frames after
    ``start``; None while they have not."""
    times = sorted(a.published for a in arrivals if a.camera in cameras and a.published > start)
    return times[quota - 1] if quota >= 1 and len(times) >= quota else None


def kill_figures(
    arrivals: list[Arrival],
    windows: dict[str, tuple[float, float]],
    cameras: list[str],
    killed: str,
    restart: tuple[float, float] | None,
) -> dict[str, Any]:
    """Each camera's FPS in each window (publish wall times); the others' FPS during (and
    after) ÷ before, each and in all, the largest change of one of them; whether ``killed``
    published a frame captured after its server's ``restart`` (monotonic, wall) and how long
    after it that arrived."""
    others = [c for c in cameras if c != killed]
    rates: dict[str, dict[str, float]] = {}
    table: dict[str, Any] = {}
    for name, (start, end) in windows.items():
        span = max(end - start, 1e-9)
        counts = window_counts(arrivals, start, end)
        rates[name] = {c: counts.get(c, 0) / span for c in cameras}
        table[name] = {
            "s": round(span, 3),
            "frames": {c: counts.get(c, 0) for c in cameras},
            "fps": {c: round(rates[name][c], 3) for c in cameras},
            "others_fps": round(sum(rates[name][c] for c in others), 3),
        }

    def ratio(window: str, camera: str | None = None) -> float | None:
        if window not in rates or "before" not in rates:
            return None
        pick = [camera] if camera else others
        now, base = (sum(rates[w][c] for c in pick) for w in (window, "before"))
        return now / base if base else None

    during = {c: ratio("during", c) for c in others}
    changes = [abs(r - 1) for r in during.values() if r is not None]
    # A camera with no frame before has no ratio: no change can be claimed for it.
    worst = max(changes) if changes and len(changes) == len(others) else None
    reconnect_s = None
    if restart is not None:
        after_restart = (a.arrived for a in arrivals
                         if a.camera == killed and a.captured > restart[1])  # fmt: skip
        first = next(after_restart, None)
        reconnect_s = None if first is None else round(first - restart[0], 3)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "killed": killed,
        "windows": table,
        "others_during_vs_before": {c: rounded(r) for c, r in during.items()},
        "others_after_vs_before": {c: rounded(ratio("after", c)) for c in others},
        "others_total_during_vs_before": rounded(ratio("during")),
        "others_total_after_vs_before": rounded(ratio("after")),
        "others_fps_change": rounded(worst),
        "reconnected": reconnect_s is not None,
        "reconnect_s": reconnect_s,
    }


def stream_cameras(uris: list[str], fps_limit: float | None,
                   decode_threads: int | None) -> list[dict[str, Any]]:  # fmt: skip
    """The config's ``cameras:``: one live network stream each, paced by ``fps_limit``."""
    cameras = []
    for camera_id, uri in zip(camera_ids(len(uris)), uris, strict=True):
        source = {"uri": uri, "mode": "live", "decode_threads": decode_threads,
                  "reconnect": dict(RECONNECT)}  # fmt: skip
        cameras.append({"id": camera_id, "source": source,
                        **({"fps_limit": fps_limit} if fps_limit else {})})  # fmt: skip
    return cameras


# -- the run ----------------------------------------------------------------------------------


class _Failed(Exception):
    pass


class _Pump:
    """Reads the daemon's detections until a condition holds: every message with its arrival."""

    def __init__(self, daemon: Any, deadline: float) -> None:
        self.daemon = daemon
        self.deadline = deadline
        self.arrivals: list[Arrival] = []
        self.messages: list[dict[str, Any]] = []

    def until(self, done: Callable[[], bool], deadline: float | None = None) -> bool:
        """Read until ``done()``; False when ``deadline`` passed first (the run's own timeout
        and the daemon's exit are failures)."""
        while not done():
            now = time.monotonic()
            if deadline is not None and now > deadline:
                return False
            if now > self.deadline:
                raise _Failed("timed out")
            if not self.daemon.sub.poll(200):
                if self.daemon.proc.poll() is not None:
                    raise _Failed(f"edged exited with {self.daemon.proc.returncode}")
                continue
            _topic, payload = self.daemon.sub.recv_multipart()
            message = json.loads(payload)
            self.arrivals.append(arrival(message, time.monotonic()))
            self.messages.append(message)
        return True

    def count_of(self, camera: str) -> int:
        return sum(1 for a in self.arrivals if a.camera == camera)


def run_camera_kill(
    settings: PipelineBenchSettings,
    model: dict[str, Any],
    workdir: Path,
    frames_per_camera: int,
    fps_limit: float | None,
    options: str | None = None,
    paced: bool = True,
) -> dict[str, Any]:
    """Serve every camera from its own FFmpeg, run the daemon, kill camera 0's server and start
    it again; the figures of the three windows (see the module's docstring)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ids = camera_ids(settings.cameras)
    servers = [StreamServer(settings.source, workdir / f"ffmpeg-{c}.log") for c in ids]
    endpoint = f"ipc://{workdir}/pub.sock"
    cameras = stream_cameras([s.uri for s in servers], fps_limit, settings.decode_threads)
    config = daemon_config(settings, model, CAMERAS_KILL_MODE, workdir, endpoint, None,
                           options=options, cameras=cameras)  # fmt: skip
    try:
        for server in servers:
            server.start()
        with launched(config, workdir, endpoint, settings) as daemon:
            pump = _Pump(daemon, time.monotonic() + settings.timeout_s)
            window = CpuWindow(daemon.root)
            try:
                phases = _phases(pump, servers, ids, settings.warmup,
                                 frames_per_camera * (len(ids) - 1), window)  # fmt: skip
            except (_Failed, RuntimeError) as failure:  # RuntimeError: FFmpeg did not listen
                return {"status": "failed", "reason": str(failure),
                        "log_tail": log_tail(daemon.log_path)}  # fmt: skip
            finally:
                if daemon.proc.poll() is None:
                    daemon.proc.send_signal(signal.SIGTERM)  # drain and exit
    except RuntimeError as exc:  # an FFmpeg that would not listen before the daemon started
        return {"status": "failed", "reason": str(exc)}
    finally:
        for server in servers:
            server.stop()
    start, end = phases["windows"]["before"][0], phases["end"]
    figures = kill_figures(pump.arrivals, phases["windows"], ids, ids[0], phases["restart"])
    in_windows = [m for a, m in zip(pump.arrivals, pump.messages, strict=True)
                  if start < a.published <= end]  # fmt: skip
    return {
        "status": "ok",
        **_summary(in_windows, figures, window),
        "fps_limit": fps_limit,
        "paced": paced,
        "reconnect_config": dict(RECONNECT),
        "cameras_config": len(ids),
        "servers_lost": phases["servers_lost"],
        **figures,
        **daemon.sampler.in_window(window.start, window.stop),
        "exit_code": daemon.code,
    }


def _phases(pump: _Pump, servers: list[StreamServer], ids: list[str], warmup: int,
            quota: int, cpu: CpuWindow) -> dict[str, Any]:  # fmt: skip
    """Warm-up, before, kill, during, restart, after (and camera 0's reconnect). Windows are
    publish wall times: messages queued while ``start()`` blocked the reading fall before the
    restart, not in "after"."""
    killed, others = ids[0], ids[1:]
    pump.until(lambda: all(pump.count_of(c) >= warmup for c in ids))
    cpu.begin()
    windows: dict[str, tuple[float, float]] = {}

    def window(name: str, start: float) -> float:
        ends: list[float | None] = [None]  # the window's end once found: computed once a read

        def found() -> bool:
            ends[0] = window_end(pump.arrivals, start, others, quota)
            return ends[0] is not None

        pump.until(found)
        windows[name] = (start, ends[0] or start)
        return windows[name][1]

    window("before", time.time())
    servers[0].stop()
    window("during", time.time())  # from its death: "while it is down"
    lost = [c for c, s in zip(others, servers[1:], strict=True) if not s.alive()]
    restart = servers[0].start()
    end = window("after", restart[1])

    def reconnected() -> bool:
        return any(a.camera == killed and a.captured > restart[1] for a in pump.arrivals)

    pump.until(reconnected, deadline=restart[0] + RECONNECT_WAIT_S)
    cpu.end()
    lost += [c for c, s in zip(others, servers[1:], strict=True) if not s.alive() and c not in lost]
    return {"windows": windows, "restart": restart, "end": end, "servers_lost": lost}


def _summary(messages: list[dict[str, Any]], figures: dict[str, Any],
             cpu: CpuWindow) -> dict[str, Any]:  # fmt: skip
    """The figures every edged run has (frames, FPS, latency, CPU) over the messages of the
    three windows: FPS is all cameras' before the kill."""
    latency = [m["latency_ms"] for m in messages]
    e2e = [x["end_to_end"] for x in latency]
    infer = [x["infer"] for x in latency]
    before = figures["windows"]["before"]
    return {
        **cpu.result(),
        "frames": len(latency),
        "fps": round(sum(before["frames"].values()) / before["s"], 2),
        "e2e_ms": percentile_summary(e2e),
        "infer_ms": percentile_summary(infer),
        "added_ms": percentile_summary([a - b for a, b in zip(e2e, infer, strict=True)]),
        "skipped_frames": None,
        "precision": messages[-1]["model"]["precision"],
    }
