"""The supervisor's smaller parts on their own: re-reading the config, the reloads that wait for
a swap, the status line, and the restart bookkeeping of real (short-lived) processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import yaml

from edged.config import ConfigError, EdgedConfig, PipelineConfig, load_config
from edged.pipeline.reload import DeferredReloads, reread_config
from edged.pipeline.stage_processes import StageProcesses
from edged.pipeline.status import status_line
from edged.pipeline.telemetry import PipelineState


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_reread_names_the_changed_sections_and_what_needs_a_restart(tmp_path: Path) -> None:
    path = write(tmp_path / "edged.yaml", {"source": {"uri": "synthetic:"}})
    running = load_config(path)
    write(path, {"source": {"uri": "synthetic:"}, "postprocess": {"conf_threshold": 0.4}})
    reloaded = reread_config(path, {}, running, lambda new: None)
    assert reloaded.changed == ["postprocess"] and reloaded.needs_restart == ["postprocess"]


def test_a_reread_refuses_what_the_check_refuses(tmp_path: Path) -> None:
    path = write(tmp_path / "edged.yaml", {"source": {"uri": "synthetic:"}})

    def refuse(new: EdgedConfig) -> None:
        raise ConfigError([("source.mode", "no")], str(path))

    with pytest.raises(ConfigError, match=r"source\.mode"):
        reread_config(path, {}, load_config(path), refuse)


def test_deferred_reloads_keep_one_signal_and_a_bounded_number_of_clients() -> None:
    waiting = DeferredReloads(limit=2)
    assert waiting.add(None) and waiting.add(None)  # the second signal joins the first
    assert waiting.add(b"client")
    assert not waiting.add(b"another")  # full: the caller refuses it
    assert waiting.take_all() == [None, b"client"] and not waiting


def test_the_status_line_says_why_no_frames_come() -> None:
    state = PipelineState(source_error="cannot open stream source 'rtsp://cam'")
    assert status_line(state) == ("0.0 fps, no model, 0 frames published; source: cannot open "
                                  "stream source 'rtsp://cam'")  # fmt: skip
    state.ended = True
    assert status_line(state) == "0.0 fps, no model, 0 frames published"


def exit_at_once(code: int) -> None:
    raise SystemExit(code)


def test_a_dead_process_is_restarted_after_its_backoff_then_given_up() -> None:
    processes = StageProcesses("fused", PipelineConfig(restart_limit=1, restart_window_s=60))
    proc = multiprocessing.get_context("fork").Process(target=exit_at_once, args=(3,))
    proc.start()
    proc.join(10)
    processes.by_name["infer"] = proc
    deaths = processes.check(100.0)
    assert deaths.died == ["infer"] and not deaths.due and not deaths.gave_up
    assert processes.health() == (False, "stage(s) not running: infer")
    assert processes.check(100.1).due == []  # the first restart waits 0.25 s
    assert processes.check(100.3).due == ["infer"]
    assert processes.check(101.0).gave_up  # still dead: a second death within the window
