"""HailoRT exceptions → :class:`BackendError` messages a user can act on.

pyhailort raises ``HailoRTException`` subclasses whose names and texts changed between releases
(e.g. a HEF for the wrong chip is ``HailoRTHEFNotCompatibleWithDevice`` from 4.20, a generic
``libhailort failed with error: 93 (HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE)`` or
``HailoRTInvalidHEFException`` before). So the mapping looks at the class names in the MRO *and*
the status names in the text, never at ``isinstance`` against classes that may not exist.
"""

from __future__ import annotations

import glob
from enum import Enum

from edged.backends.base import BackendBroken, BackendError


class HailoFailure(str, Enum):
    NO_DEVICE = "no_device"
    BUSY = "busy"
    ARCH_MISMATCH = "arch_mismatch"
    INVALID_HEF = "invalid_hef"
    TIMEOUT = "timeout"
    DRIVER = "driver"
    OTHER = "other"


HEF_HINT = (
    "HEFs are compiled per chip: use *_h8l.hef on a Hailo-8L (AI Kit, AI HAT+ 13 TOPS) and "
    "*_h8.hef on a Hailo-8 (AI HAT+ 26 TOPS); `hailortcli fw-control identify` prints the "
    "device architecture"
)


class HailoBackendError(BackendError):
    """A :class:`BackendError` that also says which kind of failure it was (for tests, metrics)."""

    def __init__(self, message: str, failure: HailoFailure) -> None:
        super().__init__(message)
        self.failure = failure


class HailoBackendBroken(HailoBackendError, BackendBroken):
    """A HailoRT failure after which the configured model runs no more frames."""


def hailo_device_nodes() -> list[str]:
    """``/dev/hailo*`` character devices (the PCIe driver creates one per chip)."""
    return sorted(glob.glob("/dev/hailo[0-9]*"))


def _names(exc: BaseException) -> str:
    return " ".join(cls.__name__ for cls in type(exc).__mro__)


def classify(exc: BaseException) -> HailoFailure:
    """Which :class:`HailoFailure` a HailoRT exception (or its chained cause) stands for."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{_names(current)} {current}")
        current = current.__cause__ or current.__context__
    text = " ".join(parts).upper()
    if any(
        key in text
        for key in (
            "HEFNOTCOMPATIBLE",
            "HEF_NOT_COMPATIBLE",
            "NOT COMPATIBLE WITH DEVICE",
            "INVALID_DEVICE_ARCHITECTURE",
        )
    ):
        return HailoFailure.ARCH_MISMATCH
    if "DEVICE_IN_USE" in text or "DEVICE IS ALREADY IN USE" in text:
        return HailoFailure.BUSY
    if "OUT_OF_PHYSICAL_DEVICES" in text or "NOT ENOUGH FREE DEVICES" in text:
        # 74 means "fewer free chips than requested": busy when a chip exists, absent otherwise.
        return HailoFailure.BUSY if hailo_device_nodes() else HailoFailure.NO_DEVICE
    if "DEVICE NOT FOUND" in text or "DEVICE_NOT_CONNECTED" in text:
        return HailoFailure.NO_DEVICE
    if "TIMEOUT" in text:
        return HailoFailure.TIMEOUT
    if "INVALIDHEF" in text or "INVALID_HEF" in text or "HEF_FILE_CORRUPTED" in text:
        return HailoFailure.INVALID_HEF
    if "HEF_NOT_SUPPORTED" in text:
        return HailoFailure.INVALID_HEF
    if "DRIVER" in text:
        return HailoFailure.NO_DEVICE if not hailo_device_nodes() else HailoFailure.DRIVER
    return HailoFailure.OTHER


def explain(exc: BaseException, hef_name: str, doing: str) -> HailoBackendError:
    """A user-facing :class:`HailoBackendError` for ``exc`` raised while ``doing`` something."""
    failure = classify(exc)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if failure is HailoFailure.NO_DEVICE:
        msg = (
            "no Hailo device found (no /dev/hailo0): check that the AI Kit / AI HAT+ is seated, "
            "PCIe is enabled, and the hailo_pci driver is loaded (`sudo apt install hailo-all`, "
            "reboot, `dmesg | grep -i hailo`)"
        )
    elif failure is HailoFailure.BUSY:
        msg = (
            "the Hailo device is busy: another process holds it (find it with "
            "`sudo lsof /dev/hailo0`, e.g. another edged, rpicam-apps with a Hailo stage or a "
            "GStreamer pipeline); stop it, or run every Hailo user through hailort.service "
            "(multi-process service)"
        )
    elif failure is HailoFailure.ARCH_MISMATCH:
        msg = f"the HEF was compiled for a different Hailo chip than this one. {HEF_HINT}"
    elif failure is HailoFailure.INVALID_HEF:
        msg = (
            "HailoRT rejected the HEF (corrupted file, compiled by a newer Dataflow Compiler than "
            f"this HailoRT supports, or for another chip). {HEF_HINT}"
        )
    elif failure is HailoFailure.TIMEOUT:
        msg = "the Hailo device did not answer in time (device hung, overheated or overloaded)"
    elif failure is HailoFailure.DRIVER:
        msg = (
            "HailoRT could not talk to the hailo_pci driver (driver/library version mismatch or "
            "a driver fault): reinstall matching `hailo-all` packages, reboot, check "
            "`dmesg | grep -i hailo`"
        )
    else:
        msg = "HailoRT failed"
    return HailoBackendError(f"{hef_name}: {doing}: {msg} [{detail}]", failure)
