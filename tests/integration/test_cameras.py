"""Several cameras in one daemon: one capture+preprocess process per camera, one shared inference
stage, every camera's detections on its own topic. Real processes, sockets and files; the slow
backend is the hailo_platform test double (the NPU is the hardware that is absent)."""

from __future__ import annotations

import fcntl
import json
import os
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil
import pytest
import yaml

from tests.daemon import VIDEO, Daemon, free_port, poll_until, require
from tests.fakes.fixtures import fake_env, write_hef

pytestmark = pytest.mark.integration


def write_clip(path: Path, frames: int, skip: int = 0) -> Path:
    """The first ``frames`` frames of the shared video (after ``skip``) as a file of its own."""
    cap = cv2.VideoCapture(str(require(VIDEO)))
    writer = None
    try:
        for index in range(skip + frames):
            ok, image = cap.read()
            assert ok, f"the shared video has fewer than {skip + frames} frames"
            if index < skip:
                continue
            if writer is None:
                h, w = image.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (w, h))
            writer.write(image)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    check = cv2.VideoCapture(str(path))
    assert int(check.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
    check.release()
    return path


def cameras_config(clips: dict[str, Path], mode: str = "lossless", **extra: Any) -> dict[str, Any]:
    loop = mode != "lossless"  # live: the files loop until the test has seen enough
    return {
        "cameras": [
            {"id": cam, "source": {"uri": str(path), "mode": mode, "loop": loop}}
            for cam, path in clips.items()
        ],
        **extra,
    }


def collect(
    daemon: Daemon, sub, count: int, timeout: float = 120.0, more: bool = False
) -> list[tuple[str, dict]]:
    """``count`` (camera, message) pairs in publish order; nothing more after them unless
    ``more``."""
    got: list[tuple[str, dict]] = []
    while len(got) < count:
        received = daemon.receive(sub, timeout)
        assert received is not None, daemon._with_log(f"only {len(got)} of {count} messages")
        topic, message = received
        camera = topic.decode().removeprefix("detections.")
        assert message["camera_id"] == camera
        got.append((camera, message))
    assert more or daemon.receive(sub, timeout=2.0) is None, "more messages than frames"
    return got


@pytest.mark.parametrize("layout", ["fused", "isolated"])
def test_three_file_cameras_lossless_publish_every_frame_once_on_their_own_topic(
    tmp_path: Path, layout: str
) -> None:
    lengths = {"front": 7, "yard": 10, "gate": 13}
    clips = {cam: write_clip(tmp_path / f"{cam}.mp4", n, skip=20 * i)
             for i, (cam, n) in enumerate(lengths.items())}  # fmt: skip
    config = cameras_config(clips, publish={"wait_for_subscribers": 1},
                            pipeline={"layout": layout})  # fmt: skip
    with Daemon(tmp_path, config=config) as daemon:
        sub = daemon.subscriber()
        got = collect(daemon, sub, sum(lengths.values()))
        # The supervisor counts a frame when the publish stage's report reaches it, which can
        # come after the message reached this subscriber.
        daemon.wait_published(sum(lengths.values()))
        status = daemon.ctl("status")
        # Per camera its capture+preprocess (isolated: two processes); one shared infer and
        # one postprocess+publish (isolated: two).
        stages = status["stages"]
        assert {s for s in stages if s.startswith("capture")} == {
            f"capture[{cam}]" for cam in lengths
        }
        pids = {s["pid"] for s in stages.values()}
        per_camera, shared = (1, 2) if layout == "fused" else (2, 3)
        assert len(pids) == shared + per_camera * len(lengths)
        assert len({stages[f"capture[{cam}]"]["pid"] for cam in lengths}) == len(lengths)
        for cam, n in lengths.items():
            assert status["cameras"][cam]["frames_published"] == n
        # Metrics carry the camera label, one value per configured camera and no other.
        scrape = daemon.metrics()
        for cam, n in lengths.items():
            assert scrape.value("edged_frames_total", stage="publish", outcome="ok",
                                camera=cam) == n  # fmt: skip
            assert scrape.value("edged_end_to_end_latency_seconds_count", camera=cam) == n
            assert scrape.value("edged_stage_latency_seconds_count", stage="capture",
                                camera=cam) == n  # fmt: skip
        labelled = {s.labels["camera"] for f in scrape.families.values() for s in f.samples
                    if "camera" in s.labels}  # fmt: skip
        assert labelled == set(lengths)
        assert daemon.stop() == 0
    for cam, n in lengths.items():
        seqs = [m["seq"] for c, m in got if c == cam]
        assert seqs == list(range(n)), cam  # every frame of its file once, in order
    # Each camera's own file: its first frame is its clip's (not another camera's).
    first = {cam: next(m for c, m in got if c == cam) for cam in lengths}
    assert all(m["source"] == {"width": 768, "height": 432} for m in first.values())


@pytest.fixture
def slow_hailo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A HEF for the hailo_platform double taking 120 ms per frame (sleeping, no CPU)."""
    hef = write_hef(tmp_path / "yolov8s_h8l.hef", arch="HAILO8L")
    env = fake_env(
        EDGED_FAKE_HAILO_LATENCY_MS="120",
        EDGED_FAKE_HAILO_DETECTIONS=json.dumps([[2, 0.4, 0.3, 0.6, 0.7, 0.9]]),
    )
    return hef, env  # fmt: skip


@pytest.mark.parametrize("mode", ["lossless", "realtime"])
def test_a_slow_backend_serves_the_cameras_in_turn(tmp_path: Path, slow_hailo, mode: str) -> None:
    """Inference is the bottleneck (120 ms a frame; capture and letterbox take a few ms): every
    camera keeps frames waiting, and the scheduler takes them round-robin. From the moment all
    three have started (their processes start one after another, seconds apart on a busy
    machine) until one runs out of frames, no camera gets more than 2 frames ahead of another
    (a strict a-b-c turn keeps it at 1; the slack allows the frames in flight at the start;
    realtime allows 3, see below).
    Realtime (live: files paced at 25 fps, looping, latest frame wins per camera): the same
    turn, each camera's newest frame; the older ones are dropped and counted per camera."""
    hef, env = slow_hailo
    lossless = mode == "lossless"
    # Long enough that the cameras' start, seconds apart on a busy machine, leaves a window.
    lengths = {"a": 30, "b": 30, "c": 30}
    # Realtime: files of 12 s, so that a camera reopens its looping file about once while the
    # 90 messages are collected; a reopen slowed by a busy machine may miss a turn (a live
    # camera with no frame waiting is passed over), so one turn more of slack there.
    clip_frames = dict.fromkeys(lengths, 300) if not lossless else lengths
    max_spread = 2 if lossless else 3
    clips = {cam: write_clip(tmp_path / f"{cam}.mp4", n) for cam, n in clip_frames.items()}
    config = cameras_config(clips, mode, publish={"wait_for_subscribers": 1,
                                                  "wait_timeout_s": 300})  # fmt: skip
    with Daemon(tmp_path, "--model", str(hef), model=None, config=config, env=env) as daemon:
        # Subscribed once every camera's source is open: until then the first message is held
        # (and, lossless, each camera's frames wait in its ring), so the turn starts with all
        # three ready however far apart a busy machine starts their processes (a camera that
        # started 4 s late used to find the first one's 30 frames done: no window left).
        poll_until(lambda: all_open(daemon, list(lengths)), 120, daemon.log_tail)
        sub = daemon.subscriber()
        got = collect(daemon, sub, sum(lengths.values()), more=not lossless)
        if not lossless:
            scrape = daemon.metrics()
        assert daemon.stop() == 0
    order = [cam for cam, _ in got]
    all_started = max(order.index(cam) for cam in lengths)
    if lossless:
        first_done = min(len(order) - order[::-1].index(cam) - 1 for cam in lengths)
    else:
        first_done = len(order)
    assert first_done - all_started >= 2 * len(lengths), f"too short a window: {order}"
    counts: Counter[str] = Counter()
    for cam in order[all_started:first_done]:
        counts[cam] += 1
        spread = max(counts[k] for k in lengths) - min(counts[k] for k in lengths)
        assert spread <= max_spread, f"unfair order {order}"
    for cam, n in lengths.items():
        seqs = [m["seq"] for c, m in got if c == cam]
        if lossless:
            assert seqs == list(range(n))
        else:  # newest first: increasing, with the skipped frames counted as dropped
            assert seqs == sorted(set(seqs))
    if not lossless:
        assert scrape.total("edged_frames_total", outcome="dropped") > 0


def all_open(daemon: Daemon, cameras: list[str]) -> bool:
    """Whether each camera's source is open (False while the control socket is not up yet)."""
    if not (daemon.runtime_dir / "control.sock").exists():
        return False
    status = daemon.ctl("status")["cameras"]
    return all(status.get(cam, {}).get("source", {}).get("connected") for cam in cameras)


# -- lifecycle: one camera's stream dies and comes back; a reload adds and removes cameras -------


def live_config(clips: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Cameras from file paths (realtime, looping) or full source sections."""
    cameras = []
    for cam, source in clips.items():
        if isinstance(source, Path):
            source = {"uri": str(source), "mode": "realtime", "loop": True}
        cameras.append({"id": cam, "source": source})
    return {"cameras": cameras, **extra}


def capture_pids(daemon: Daemon) -> dict[str, int]:
    stages = daemon.ctl("status")["stages"]
    return {s.removeprefix("capture[").rstrip("]"): v["pid"] for s, v in stages.items()
            if s.startswith("capture[")}  # fmt: skip


def own_segments(daemon: Daemon) -> set[str]:
    """This daemon's shared memory segments (other daemons may run beside the test's): their
    names start with edged_<supervisor pid>_."""
    return {name for name in os.listdir("/dev/shm") if name.startswith(f"edged_{daemon.pid}_")}


def published(daemon: Daemon) -> dict[str, int]:
    return {c: v["frames_published"] for c, v in daemon.ctl("status")["cameras"].items()}


def wait_flowing(daemon: Daemon, cameras: list[str], more_than: dict[str, int] | None = None,
                 timeout: float = 60) -> dict[str, int]:  # fmt: skip
    """Until each of ``cameras`` published more frames than ``more_than`` says (or any)."""
    daemon.wait_ready(timeout)  # the control socket answers
    floor = more_than or {}

    def check() -> dict[str, int] | None:
        now = published(daemon)
        return now if all(now.get(c, 0) > floor.get(c, 0) for c in cameras) else None

    return poll_until(check, timeout, daemon.log_tail)


def test_a_dead_stream_camera_reconnects_alone_while_the_others_flow(
    tmp_path: Path, slow_hailo
) -> None:
    from tests.integration.test_reliability_stream import StreamServer

    hef, env = slow_hailo
    server = StreamServer(require(VIDEO), free_port(), tmp_path / "ffmpeg.log")
    reconnect = {"initial_backoff_s": 0.2, "max_backoff_s": 1.0, "stall_timeout_s": 2.0}
    net = {"uri": f"tcp://127.0.0.1:{server.port}", "reconnect": reconnect}
    clips = {"a": write_clip(tmp_path / "a.mp4", 10), "b": write_clip(tmp_path / "b.mp4", 10)}
    # /readyz is asserted at one instant: a generous frame age, so that only the lost camera
    # (told by its source, not by an age) makes it degraded on a busy machine.
    config = live_config({**clips, "net": net}, http={"ready_max_age_s": 30})
    server.start()
    try:
        with Daemon(tmp_path, "--model", str(hef), model=None, config=config, env=env) as daemon:
            wait_flowing(daemon, ["a", "b", "net"], timeout=90)
            pids = capture_pids(daemon)
            server.stop()  # the camera's server goes away: only that camera is lost

            def net_down() -> bool:
                return not daemon.ctl("status")["cameras"]["net"]["source"]["connected"]

            poll_until(net_down, 60, daemon.log_tail)
            status, body = daemon.get("/readyz")
            reason = json.loads(body)["reason"]
            assert status == 200 and "degraded" in reason and "net" in reason, reason
            down = published(daemon)
            wait_flowing(daemon, ["a", "b"], more_than=down)  # the others keep flowing
            server.start()

            def net_back() -> bool:
                source = daemon.ctl("status")["cameras"]["net"]["source"]
                return source["connected"] and source["reconnects"] >= 1

            poll_until(net_back, 90, daemon.log_tail)
            # Frames captured after the reconnect (not ones in flight from before the loss).
            wait_flowing(daemon, ["net"], more_than=published(daemon), timeout=90)
            status = daemon.ctl("status")
            assert status["cameras"]["a"]["source"]["reconnects"] == 0
            assert capture_pids(daemon) == pids  # nobody restarted, the lost camera included
            assert daemon.metrics().total("edged_stage_restarts_total") == 0
            assert daemon.stop() == 0
    finally:
        server.stop()


def test_reload_adds_removes_and_updates_cameras_and_the_others_keep_their_processes(
    tmp_path: Path, slow_hailo
) -> None:
    hef, env = slow_hailo
    clips = {c: write_clip(tmp_path / f"{c}.mp4", 10) for c in ("a", "b", "c")}
    config = live_config({"a": clips["a"], "b": clips["b"]})
    with Daemon(tmp_path, "--model", str(hef), model=None, config=config, env=env) as daemon:
        wait_flowing(daemon, ["a", "b"], timeout=90)
        pids = capture_pids(daemon)
        infer = daemon.ctl("status")["stages"]["infer"]["pid"]
        segments = own_segments(daemon)
        new = live_config({"a": clips["a"], "c": clips["c"]})
        new["cameras"][0]["conf_threshold"] = 0.95  # above the fake detection's 0.9
        daemon.config_path.write_text(yaml.safe_dump(new))
        reply = daemon.ctl("reload")
        assert reply["ok"], reply
        assert reply["cameras"] == {"added": ["c"], "removed": ["b"], "updated": ["a"]}
        assert reply["needs_restart"] == []
        wait_flowing(daemon, ["c"], timeout=90)
        status = daemon.ctl("status")
        assert set(status["cameras"]) == {"a", "c"}
        assert not any("[b]" in s for s in status["stages"])
        assert capture_pids(daemon)["a"] == pids["a"] and status["stages"]["infer"]["pid"] == infer
        gone = segments - own_segments(daemon)
        assert len(gone) == 2, gone  # b's frame and tensor rings were unlinked
        # a's new threshold applies without a restart: its detections (0.9) are filtered out,
        # from some frame on (those already past postprocess still have theirs) and for good.
        sub = daemon.subscriber(b"detections.a")

        def filtered() -> bool:
            got = daemon.receive(sub, 30)
            assert got is not None, daemon.log_tail()
            return got[1]["detections"] == []

        poll_until(filtered, 60, daemon.log_tail)
        later = [daemon.receive(sub, 30) for _ in range(3)]
        assert all(m is not None and m[1]["detections"] == [] for m in later), later
        assert daemon.stop() == 0


def ended(daemon: Daemon, camera: str) -> bool:
    return daemon.ctl("status")["cameras"][camera]["source"]["ended"]


def test_a_camera_restarted_by_a_reload_plays_again_and_exit_at_end_waits_for_it(
    tmp_path: Path, slow_hailo
) -> None:
    """a ends; a reload restarts a (now looping), removes z and adds b, which ends: the daemon
    must not take a's old end for its new run's and exit (pipeline.exit_at_end) while a plays."""
    hef, env = slow_hailo
    clips = {c: write_clip(tmp_path / f"{c}.mp4", 5) for c in ("a", "b")}
    once = {"uri": str(clips["a"]), "mode": "realtime", "loop": False}
    config = live_config({"a": once, "z": clips["b"]}, pipeline={"exit_at_end": True})
    with Daemon(tmp_path, "--model", str(hef), model=None, config=config, env=env) as daemon:
        daemon.wait_for_log("camera a ended", 90)  # published to its end
        new = live_config({"a": {**once, "loop": True},
                           "b": {"uri": str(clips["b"]), "mode": "realtime", "loop": False}},
                          pipeline={"exit_at_end": True})  # fmt: skip
        daemon.config_path.write_text(yaml.safe_dump(new))
        reply = daemon.ctl("reload")
        assert reply["cameras"] == {"restarted": ["a"], "added": ["b"], "removed": ["z"]}, reply
        daemon.wait_for_log("camera b ended", 90)  # not "source ended; exiting"
        assert not ended(daemon, "a")
        wait_flowing(daemon, ["a"], more_than=published(daemon))  # still running, a plays on
        assert daemon.stop() == 0


def test_sigterm_drains_a_camera_added_after_every_camera_ended(tmp_path: Path, slow_hailo) -> None:
    """Every camera ended (idle); a reload adds c; SIGTERM must drain c's frames in flight (a
    lossless camera loses none), not stop at once as if nothing were playing."""
    hef, env = slow_hailo
    clips = {c: write_clip(tmp_path / f"{c}.mp4", 3) for c in ("a", "b")}
    clips["c"] = write_clip(tmp_path / "c.mp4", 40)
    config = cameras_config({"a": clips["a"], "b": clips["b"]})
    with Daemon(tmp_path, "--model", str(hef), model=None, config=config, env=env) as daemon:
        poll_until(lambda: (daemon.runtime_dir / "control.sock").exists(), 90, daemon.log_tail)
        daemon.wait_for_log("source ended; idle until stopped", 90)
        sub = daemon.subscriber(b"detections.c")
        daemon.config_path.write_text(yaml.safe_dump(cameras_config(clips)))
        assert daemon.ctl("reload")["cameras"]["added"] == ["c"]
        first = daemon.receive(sub, 90)
        assert first is not None, daemon.log_tail()
        assert daemon.stop() == 0
        seqs = [first[1]["seq"], *(m["seq"] for m in daemon.drain(sub))]
    log = daemon.log_text()
    # c was still playing (40 frames at 120 ms each): the drain ran and every frame c captured
    # was published, in order (a frame lost would leave a gap before the last).
    assert "draining frames in flight" in log or seqs == list(range(40)), log
    assert seqs == list(range(len(seqs))), seqs
    assert "drain did not finish" not in log


def test_the_preview_shows_every_camera(tmp_path: Path, slow_hailo) -> None:
    """One preview tap per camera on one private socket: /preview/<id>.jpg is that camera's
    picture (its frame header names its topic's seq), for each camera."""
    hef, env = slow_hailo
    clips = {c: write_clip(tmp_path / f"{c}.mp4", 10) for c in ("a", "b")}
    config = live_config(clips, preview={"enabled": True, "width": 320})
    with Daemon(tmp_path, "--model", str(hef), model=None, config=config, env=env) as daemon:
        wait_flowing(daemon, ["a", "b"], timeout=90)
        for cam in ("a", "b"):

            def snapshot(cam: str = cam) -> bytes | None:
                code, body = daemon.get(f"/preview/{cam}.jpg", timeout=15)
                return body if code == 200 else None

            jpeg = poll_until(snapshot, 60, daemon.log_tail)
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (180, 320, 3), cam
            status = json.loads(daemon.get(f"/preview/{cam}/status.json")[1])
            assert status["camera_id"] == cam
        assert daemon.stop() == 0


def preview_seq(daemon: Daemon, camera: str) -> int | None:
    """The seq of the frame /preview/<camera>.jpg shows (None: no picture)."""
    try:
        with urllib.request.urlopen(f"{daemon.base_url}/preview/{camera}.jpg", timeout=15) as r:
            return int(r.headers["X-Edged-Seq"])
    except urllib.error.HTTPError:
        return None


def test_the_preview_follows_a_reload_an_added_camera_and_one_removed_and_added_again(
    tmp_path: Path, slow_hailo
) -> None:
    """Reloads remove b and add c, then add b back: c's preview shows c's frames, and b's
    shows its new frames (its frames ring is a new one), not its last old picture for ever."""
    hef, env = slow_hailo
    clips = {c: write_clip(tmp_path / f"{c}.mp4", 10) for c in ("a", "b", "c")}
    preview = {"enabled": True, "width": 320}

    def reload(*cameras: str) -> None:
        config = live_config({c: clips[c] for c in cameras}, preview=preview)
        daemon.config_path.write_text(yaml.safe_dump(config))
        assert daemon.ctl("reload")["ok"]

    def moving(camera: str) -> None:
        """Until the camera's preview shows two different frames."""
        seen: set[int] = set()

        def two() -> bool:
            seq = preview_seq(daemon, camera)
            if seq is not None:
                seen.add(seq)
            return len(seen) >= 2

        poll_until(two, 90, daemon.log_tail)

    config = live_config({"a": clips["a"], "b": clips["b"]}, preview=preview)
    with Daemon(tmp_path, "--model", str(hef), model=None, config=config, env=env) as daemon:
        wait_flowing(daemon, ["a", "b"], timeout=90)
        moving("b")
        reload("a", "c")
        wait_flowing(daemon, ["c"], timeout=90)
        moving("c")
        reload("a", "c", "b")
        wait_flowing(daemon, ["b"], timeout=90)
        moving("b")
        moving("a")
        assert daemon.stop() == 0


def test_one_cameras_zones_that_do_not_fit_its_frames_turn_off_its_tracking_only(
    tmp_path: Path, slow_hailo
) -> None:
    """a's pixel line reaches past its 768x432 frames: a goes on without tracking (the reason in
    /readyz, its status and the STATUS line, logged once), b tracks; nothing stops."""
    hef, env = slow_hailo
    clips = {c: write_clip(tmp_path / f"{c}.mp4", 10) for c in ("a", "b")}
    config = live_config(clips, tracking={"enabled": True, "min_hits": 1})
    bad = {"name": "gate", "units": "pixels", "points": [[10, 10], [1000, 10]]}
    config["cameras"][0]["tracking"] = {"enabled": True, "lines": [bad]}
    why = "tracking.lines.0.points: point 1 (1000, 10) is outside the 768x432 frame"
    with Daemon(tmp_path, "--model", str(hef), model=None, config=config, env=env) as daemon:
        sub = daemon.subscriber()
        first = wait_flowing(daemon, ["a", "b"], timeout=90)
        wait_flowing(daemon, ["a", "b"], more_than=first)  # a's later frames: no new verdict
        assert f"a: tracking off ({why})" in json.loads(daemon.get("/readyz")[1])["reason"]
        cameras = daemon.ctl("status")["cameras"]
        assert cameras["a"]["tracking_off"] == why and cameras["b"]["tracking_off"] is None
        assert daemon.log_text().count("tracking off for camera a") == 1
        tracked: dict[str, bool] = {}
        while len(tracked) < 2:
            got = daemon.receive(sub, 30)
            assert got is not None, daemon.log_tail()
            camera, message = got[0].decode().removeprefix("detections."), got[1]
            tracked[camera] = any(d.get("track_id") is not None for d in message["detections"])
        assert tracked == {"a": False, "b": True}, tracked
        assert daemon.stop() == 0


def test_kill_9_of_one_cameras_process_or_of_inference_and_every_camera_flows_again(
    tmp_path: Path, slow_hailo
) -> None:
    """A camera's process dies: only it restarts. The shared inference process dies: it
    restarts, and every camera's slots it held are reclaimed (frames flow for all again)."""
    hef, env = slow_hailo
    clips = {c: write_clip(tmp_path / f"{c}.mp4", 10) for c in ("a", "b", "c")}
    with Daemon(tmp_path, "--model", str(hef), model=None, config=live_config(clips),
                env=env) as daemon:  # fmt: skip
        wait_flowing(daemon, list(clips), timeout=90)
        pids = capture_pids(daemon)
        psutil.Process(pids["b"]).kill()
        poll_until(lambda: capture_pids(daemon).get("b") not in (None, pids["b"]), 60,
                   daemon.log_tail)  # fmt: skip
        wait_flowing(daemon, ["b"], more_than=published(daemon), timeout=90)
        after = capture_pids(daemon)
        assert after["a"] == pids["a"] and after["c"] == pids["c"]
        infer = daemon.ctl("status")["stages"]["infer"]["pid"]
        psutil.Process(infer).kill()
        poll_until(lambda: daemon.ctl("status")["stages"]["infer"]["pid"] != infer, 60,
                   daemon.log_tail)  # fmt: skip
        wait_flowing(daemon, list(clips), more_than=published(daemon), timeout=120)
        assert capture_pids(daemon) == after
        scrape = daemon.metrics()
        assert scrape.value("edged_stage_restarts_total", stage="capture") == 1
        assert scrape.value("edged_stage_restarts_total", stage="infer") == 1
        assert daemon.stop() == 0


def test_a_hot_swap_switches_every_camera_between_frames_and_loses_none(tmp_path: Path) -> None:
    """Lossless, two cameras, a swap mid-run: every frame of each file published once, and on
    each camera the old variant's frames all come before the new one's."""
    root = tmp_path / "models"
    root.mkdir()
    write_hef(root / "one.hef", arch="HAILO8L")
    write_hef(root / "two.hef", arch="HAILO8L")
    manifest = {"name": "yolo", "labels": "coco80", "variants": {
        "one": {"backend": "hailo", "path": "one.hef", "precision": "int8"},
        "two": {"backend": "hailo", "path": "two.hef", "precision": "int8"}}}  # fmt: skip
    (root / "yolo.yaml").write_text(yaml.safe_dump(manifest))
    env = fake_env(EDGED_FAKE_HAILO_LATENCY_MS="60")
    # Long enough that the swap (its load beside inference on a busy machine) ends well before
    # the files do: ~9 s of frames after it is asked for.
    lengths = {"a": 80, "b": 80}
    clips = {cam: write_clip(tmp_path / f"{cam}.mp4", n) for cam, n in lengths.items()}
    config = cameras_config(clips, publish={"wait_for_subscribers": 1},
                            model={"manifest": str(root / "yolo.yaml"), "variant": "one",
                                   "models_dir": str(root)})  # fmt: skip
    with Daemon(tmp_path, model=None, config=config, env=env) as daemon:
        sub = daemon.subscriber()
        got = collect(daemon, sub, 10, more=True)
        reply = daemon.ctl("swap", "two")
        assert reply["ok"], reply
        got += collect(daemon, sub, sum(lengths.values()) - len(got))
        assert daemon.stop() == 0
    for cam, n in lengths.items():
        messages = [m for c, m in got if c == cam]
        assert [m["seq"] for m in messages] == list(range(n)), cam
        variants = [m["model"]["variant"] for m in messages]
        switch = variants.index("two")
        assert set(variants[:switch]) == {"one"} and set(variants[switch:]) == {"two"}, cam


def test_four_cameras_share_one_hailo_device_that_one_process_opens(tmp_path: Path) -> None:
    """The hailo_platform double with the device rule of HailoRT without its multi-process
    service (a VDevice in a second process: HAILO_DEVICE_IN_USE). A process holding the device
    keeps a daemon from loading the model; free, four cameras all flow through the one
    inference process that opens it."""
    lock = tmp_path / "hailo0.lock"
    hef = write_hef(tmp_path / "yolov8s_h8l.hef", arch="HAILO8L")
    env = fake_env(EDGED_FAKE_HAILO_DEVICE_LOCK=str(lock), EDGED_FAKE_HAILO_LATENCY_MS="20")
    clips = {c: write_clip(tmp_path / f"{c}.mp4", 10) for c in ("a", "b", "c", "d")}
    config = live_config(clips)
    other = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)  # another program has the device
        busy = Daemon(tmp_path / "busy", "--model", str(hef), model=None, config=config,
                      env=env)  # fmt: skip
        with busy:
            assert busy.proc is not None and busy.proc.wait(120) != 0
            assert "HAILO_DEVICE_IN_USE" in busy.log_text(), busy.log_tail()
    finally:
        os.close(other)
    with Daemon(tmp_path, "--model", str(hef), model=None, config=config, env=env) as daemon:
        wait_flowing(daemon, list(clips), timeout=120)
        assert daemon.stop() == 0
