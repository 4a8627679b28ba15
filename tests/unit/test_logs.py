"""Journald-aware logging: priority prefixes under systemd, timestamps elsewhere."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.logs import (
    configure_logging,
    parse_level,
    stream_is_journal,
    syslog_priority,
)


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def _ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_edged_logs_handler", False)]


@pytest.mark.parametrize(
    ("levelno", "priority"),
    [
        (logging.DEBUG, 7),
        (logging.INFO, 6),
        (25, 6),
        (logging.WARNING, 4),
        (logging.ERROR, 3),
        (logging.CRITICAL, 2),
    ],
)
def test_syslog_priority(levelno: int, priority: int) -> None:
    assert syslog_priority(levelno) == priority


def test_parse_level() -> None:
    assert parse_level("info") == logging.INFO
    assert parse_level(" DEBUG ") == logging.DEBUG
    assert parse_level(logging.ERROR) == logging.ERROR
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        parse_level("LOUD")


def test_journal_format_has_priority_and_no_timestamp() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", process_name="inference", stream=out, journal=True)
    log = logging.getLogger("edged.test")
    log.debug("tensor ready")
    log.info("model loaded")
    log.warning("slow frame")
    log.error("backend failed")
    pid = os.getpid()
    assert out.getvalue().splitlines() == [
        f"<7>inference[{pid}] edged.test: tensor ready",
        f"<6>inference[{pid}] edged.test: model loaded",
        f"<4>inference[{pid}] edged.test: slow frame",
        f"<3>inference[{pid}] edged.test: backend failed",
    ]


def test_journal_traceback_lines_keep_the_level() -> None:
    out = io.StringIO()
    configure_logging("INFO", process_name="postprocess", stream=out, journal=True)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("edged.test").exception("decode failed")
    lines = out.getvalue().splitlines()
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines), lines
    assert lines[-1] == "<3>RuntimeError: boom"


def test_console_format_has_timestamp_level_and_name() -> None:
    out = io.StringIO()
    configure_logging("INFO", process_name="capture", stream=out, journal=False)
    logging.getLogger("edged.sources").warning("camera reopened")
    logging.getLogger("edged.sources").debug("not shown")
    line = out.getvalue().rstrip("\n")
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}} WARNING capture\[{os.getpid()}\] "
        r"edged\.sources: camera reopened",
        line,
    ), line


def test_process_name_with_percent_is_literal() -> None:
    out = io.StringIO()
    configure_logging("INFO", process_name="odd%(name)s", stream=out, journal=True)
    logging.getLogger("x").info("hi")
    assert out.getvalue().startswith("<6>odd%(name)s[")


def test_idempotent_and_level_changes() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", process_name="supervisor", stream=first, journal=True)
    configure_logging("WARNING", process_name="supervisor", stream=second, journal=True)
    assert len(_ours()) == 1
    logging.getLogger("edged").info("quiet now")
    logging.getLogger("edged").warning("still shown")
    assert first.getvalue() == ""
    assert second.getvalue().count("\n") == 1
    assert "still shown" in second.getvalue()


def test_foreign_handlers_are_kept() -> None:
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    configure_logging("INFO", process_name="a", stream=io.StringIO(), journal=False)
    configure_logging("INFO", process_name="b", stream=io.StringIO(), journal=False)
    assert foreign in logging.getLogger().handlers


def test_warnings_are_captured() -> None:
    out = io.StringIO()
    configure_logging("INFO", process_name="preprocess", stream=out, journal=True)
    import warnings

    warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    assert out.getvalue().startswith("<4>preprocess[")
    assert "deprecated thing" in out.getvalue()


def test_stream_is_journal_matches_dev_and_inode(tmp_path: Path) -> None:
    with open(tmp_path / "stderr", "w") as stream:
        st = os.fstat(stream.fileno())
        assert stream_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not stream_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not stream_is_journal(stream, {})
        assert not stream_is_journal(stream, {"JOURNAL_STREAM": "garbage"})
    assert not stream_is_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


_CHILD = """
import logging, sys
from edged.logs import configure_logging
configure_logging("INFO", process_name=sys.argv[1])
logging.getLogger("edged.child").warning("hello")
"""


def _run_child(tmp_path: Path, journal_stream: str | None) -> str:
    """Run a fresh interpreter whose stderr is a file, optionally announced as the journal."""
    err = tmp_path / "stderr.txt"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with open(err, "w") as handle:
        if journal_stream == "match":
            st = os.fstat(handle.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal_stream is not None:
            env["JOURNAL_STREAM"] = journal_stream
        subprocess.run(
            [sys.executable, "-c", _CHILD, "capture"],
            stderr=handle,
            env=env,
            check=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
    return err.read_text()


def test_detects_journal_from_the_environment(tmp_path: Path) -> None:
    assert _run_child(tmp_path, "match").startswith("<4>capture[")


def test_stderr_redirected_elsewhere_gets_timestamps(tmp_path: Path) -> None:
    # JOURNAL_STREAM inherited, but stderr was redirected to a file: not the journal.
    text = _run_child(tmp_path, "1:1")
    assert re.match(r"\d{4}-\d\d-\d\d .* WARNING capture\[\d+\] edged.child: hello", text), text
