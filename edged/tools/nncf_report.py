"""What NNCF's accuracy control did, read from its log.

``nncf.quantize_with_accuracy_control`` returns only the model; the metrics it measured and the
operations it reverted to float exist only as INFO records of the ``nncf`` logger (NNCF 2.x/3.x:
``Metric of initial model: …``, ``Reverted N operations to the floating-point precision: …``,
``N out of M were reverted back to the floating-point precision: …``). A handler collects them
while the call runs; the parsing stays here, next to the messages it knows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

NNCF_LOGGER = "nncf"
_METRIC = re.compile(r"^Metric of (\w+) model: (\S+)$")
_STEP = re.compile(r"^Reverted \d+ operations to the floating-point precision: ?\n(.*)", re.S)
_FINAL = re.compile(
    r"^(\d+) out of (\d+) were reverted back to the floating-point precision:\n?(.*)", re.S
)
_QUANTIZED_OPS = re.compile(r"^Total number of quantized operations in the model: (\d+)$")
_ALL_CHECKED = "All layers have been checked"
_NOT_REACHED = "could not achieve the required accuracy drop"


@dataclass
class AccuracyControlReport:
    """NNCF's own figures: metrics by model (``initial``, ``quantized``, ``tuned``), the
    operations it reverted to float, whether it met ``max_drop``."""

    metrics: dict[str, float] = field(default_factory=dict)
    reverted: list[str] = field(default_factory=list)
    quantized_operations: int | None = None
    reverted_all: bool = False
    reached: bool = True


def _names(block: str) -> list[str]:
    return [line.strip() for line in block.splitlines() if line.strip()]


def parse(messages: list[str]) -> AccuracyControlReport:
    report = AccuracyControlReport()
    steps: list[str] = []
    final: list[str] | None = None
    for message in messages:
        if m := _METRIC.match(message):
            report.metrics[m[1]] = float(m[2])
        elif m := _STEP.match(message):
            steps += _names(m[1])
        elif m := _FINAL.match(message):
            final = _names(m[3])
        elif m := _QUANTIZED_OPS.match(message):
            report.quantized_operations = int(m[1])
        elif message.startswith(_ALL_CHECKED):
            report.reverted_all = True
        elif _NOT_REACHED in message:
            report.reached = False
    # The closing summary lists what stayed reverted (a step back re-quantizes a group); NNCF
    # skips it when every group was reverted, and then each step's list is the whole answer.
    report.reverted = final if final is not None else list(dict.fromkeys(steps))
    return report


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def nncf_log() -> Iterator[list[str]]:
    """Collect the ``nncf`` logger's INFO messages while the block runs (NNCF keeps printing
    them to stdout as well); a logger set quieter than INFO is opened to INFO meanwhile."""
    logger = logging.getLogger(NNCF_LOGGER)
    handler, level = _Collect(), logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
