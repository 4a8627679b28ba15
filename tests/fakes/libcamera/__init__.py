"""A minimal test double of libcamera's Python bindings (what picamera2 and edged touch)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import SimpleNamespace


@dataclass(frozen=True)
class Transform:
    hflip: int = 0
    vflip: int = 0
    transpose: int = 0


class ColorSpace:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<libcamera.ColorSpace '{self.name}'>"

    @staticmethod
    def Sycc() -> ColorSpace:  # libcamera's names
        return ColorSpace("sYCC")

    @staticmethod
    def Smpte170m() -> ColorSpace:
        return ColorSpace("SMPTE170M")

    @staticmethod
    def Rec709() -> ColorSpace:
        return ColorSpace("Rec709")

    @staticmethod
    def Raw() -> ColorSpace:
        return ColorSpace("RAW")


class _AfModeEnum(enum.IntEnum):  # libcamera's control_ids: Manual, Auto, Continuous
    Manual = 0
    Auto = 1
    Continuous = 2


controls = SimpleNamespace(AfModeEnum=_AfModeEnum)  # ``from libcamera import controls``
