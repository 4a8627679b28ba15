"""Logging set-up that reads well both in a terminal and in the systemd journal.

Under systemd, stderr is a stream into journald, which stamps every line with its own time,
unit and PID. There edged writes no timestamp and starts each line with the sd-daemon
priority prefix ``<N>`` (``sd-daemon(3)``), so ``journalctl -p warning`` and the colours work.
Elsewhere lines carry a timestamp and the level name.

Every line names the process (``supervisor``, ``capture``, ``inference``, ...) and its PID:
the stages share the supervisor's stderr, so journald attributes all lines to the main PID.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from edged.redact import redact_uri

# logging level -> syslog priority, sd-daemon(3): <2> crit <3> err <4> warning <6> info <7> debug
_PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_DEBUG_PRIORITY = 7
# Marks the handler we installed so a second call replaces it instead of adding another.
_MARK = "_edged_logs_handler"


def syslog_priority(levelno: int) -> int:
    """The syslog priority for a :mod:`logging` level number (custom levels round down)."""
    for threshold, priority in _PRIORITIES:
        if levelno >= threshold:
            return priority
    return _DEBUG_PRIORITY


def parse_level(level: str | int) -> int:
    """``"info"``/``"INFO"``/``20`` → ``20``; anything else is a :class:`ValueError`."""
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r} (use DEBUG, INFO, WARNING or ERROR)")
    return value


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journald connection systemd announced in ``$JOURNAL_STREAM``.

    systemd sets ``JOURNAL_STREAM=<device>:<inode>`` of the stdout/stderr socket; comparing it
    with the stream's own fstat tells a redirected stderr (a file, a pipe) from the journal.
    """
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        # No fileno (a StringIO under test), a closed fd, or a malformed variable.
        return False


class JournalFormatter(logging.Formatter):
    """``<N>name[pid] logger: message``, with ``<N>`` on every line of a multi-line record.

    journald applies a level prefix per line; without repeating it a traceback logged at
    ERROR would show up as lines of level info.
    """

    def __init__(self, process_name: str) -> None:
        super().__init__(f"{_escape(process_name)}[%(process)d] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


class ConsoleFormatter(logging.Formatter):
    """``2025-01-31 12:00:00.123 INFO    name[pid] logger: message`` for terminals and files."""

    def __init__(self, process_name: str) -> None:
        super().__init__(
            "%(asctime)s.%(msecs)03d %(levelname)-7s "
            f"{_escape(process_name)}[%(process)d] %(name)s: %(message)s",
            datefmt="%Y-%m-%d %H:%M:%S",
        )


class RedactingHandler(logging.StreamHandler):
    """A stream handler that hides URI credentials in every line, tracebacks included: a
    library's message (FFmpeg's, a ZeroMQ error) may carry a source URI edged never formed."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_uri(super().format(record))


def configure_logging(
    level: str | int,
    *,
    process_name: str,
    stream: TextIO | None = None,
    journal: bool | None = None,
) -> None:
    """Route the root logger to stderr in the journal or console format.

    Safe to call again (each spawned stage calls it once at start; a reload may change the
    level): our previous handler is replaced, handlers installed by others are kept.

    Args:
        level: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` (any case) or a level number.
        process_name: shown in every line, e.g. ``supervisor`` or the stage name.
        stream: where to write; default :data:`sys.stderr` (looked up at call time).
        journal: force the journal format on/off; default: detect ``$JOURNAL_STREAM``.
    """
    levelno = parse_level(level)
    out = sys.stderr if stream is None else stream
    use_journal = stream_is_journal(out) if journal is None else journal
    formatter: logging.Formatter = (
        JournalFormatter(process_name) if use_journal else ConsoleFormatter(process_name)
    )
    handler = RedactingHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(levelno)
    # warnings.warn() from numpy/onnxruntime end up in the same format and stream.
    logging.captureWarnings(True)


def _escape(text: str) -> str:
    # The name becomes part of a %-style format string.
    return text.replace("%", "%%")
