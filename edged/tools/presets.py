"""The recommended static-quantization settings, and the measurements behind them.

Kept in a module of its own (no heavy imports) so the CLI can show these defaults without
loading ONNX Runtime's quantization package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StaticPreset:
    method: str = "minmax"
    num_images: int = 128
    head_levels: int = 1
    percentile: float = 99.999
    chunk: int = 4
    activation_type: str = "uint8"


# Placeholder, replaced with the measured best configuration.
RECOMMENDED_STATIC = StaticPreset()
