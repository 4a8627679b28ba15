"""The Hailo chip seen from outside a backend: identity and temperature, for the supervisor's
metrics and ``edged doctor``, and the HailoRT version edged needs.

Kept apart from :mod:`edged.backends.hailo` (the backend: VDevice sharing, jobs, buffers) so the
supervisor and doctor import only this. ``hailo_platform`` is imported on first use, never at
import time. A control-only ``Device`` handle does not claim the chip the way a ``VDevice`` does.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from edged.backends.hailo_errors import hailo_device_nodes

log = logging.getLogger(__name__)

MIN_HAILORT: tuple[int, int, int] = (4, 18, 0)  # the async InferModel API


def _max_temperature(info: Any) -> float | None:
    values = [getattr(info, attr, None) for attr in ("ts0_temperature", "ts1_temperature")]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return max(numbers) if numbers else None


class HailoTemperatureReader:
    """Reads the chip temperature through a control-only ``Device`` handle (cached).

    A ``Device`` handle does not claim the chip the way a ``VDevice`` does, so the supervisor
    can read the temperature while the inference stage process runs models on it.
    """

    def __init__(
        self,
        device_id: str | None = None,
        importer: Callable[[], ModuleType] | None = None,
        device_nodes: Callable[[], list[str]] = hailo_device_nodes,
    ) -> None:
        self._device_id = device_id
        self._importer = importer or (lambda: importlib.import_module("hailo_platform"))
        self._device_nodes = device_nodes
        self._device: Any = None
        self._lock = threading.Lock()

    def read(self) -> float | None:
        """Degrees Celsius (hotter of the two on-chip sensors), or ``None`` when unavailable."""
        with self._lock:
            try:
                if self._device is None:
                    if not self._device_nodes():
                        return None
                    hp = self._importer()
                    self._device = hp.Device(self._device_id) if self._device_id else hp.Device()
                return _max_temperature(self._device.control.get_chip_temperature())
            except Exception as exc:
                log.debug("Hailo temperature unavailable: %s", exc)
                self._close_locked()
                return None

    def _close_locked(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            with contextlib.suppress(Exception):
                device.release()

    def close(self) -> None:
        with self._lock:
            self._close_locked()


def hailo_device_info(
    device_id: str | None = None, hailo_platform: ModuleType | None = None
) -> dict[str, str]:
    """Identity of the first (or given) Hailo chip: architecture, firmware, serial, product.

    Raises whatever HailoRT raises; callers (``edged doctor``) report it.
    """
    hp = hailo_platform or importlib.import_module("hailo_platform")
    device = hp.Device(device_id) if device_id else hp.Device()
    try:
        ident = device.control.identify()
        info = {
            "device_id": str(getattr(device, "device_id", device_id or "")),
            "architecture": str(getattr(ident, "device_architecture", "unknown")),
            "firmware": str(getattr(ident, "firmware_version", "unknown")),
            "serial": str(getattr(ident, "serial_number", "") or "").strip("\x00 "),
            "product": str(getattr(ident, "product_name", "") or "").strip("\x00 "),
        }
        temperature = _max_temperature(device.control.get_chip_temperature())
        if temperature is not None:
            info["temperature_c"] = f"{temperature:.1f}"
        return info
    finally:
        with contextlib.suppress(Exception):
            device.release()
