"""A generated test pattern: needs no camera, no file and no network."""

from __future__ import annotations

import cv2
import numpy as np

from edged.sources.base import SourceInfo


class SyntheticSource:
    """Colour bars with moving shapes and a frame counter, paced like a camera."""

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 15.0) -> None:
        # Not live: frames are generated on demand, so capture paces them at `fps`.
        self.info = SourceInfo("synthetic", "synthetic:", width, height, fps, live=False)
        bars = np.array(
            [[192, 192, 192], [0, 192, 192], [192, 192, 0], [0, 192, 0],
             [192, 0, 192], [0, 0, 192], [192, 0, 0], [16, 16, 16]],
            dtype=np.uint8,
        )  # fmt: skip
        columns = np.arange(width) * len(bars) // width
        self._background = np.ascontiguousarray(np.broadcast_to(bars[columns], (height, width, 3)))
        self._index = 0

    def read(self) -> np.ndarray:
        w, h = self.info.width, self.info.height
        frame = self._background.copy()
        t = self._index / self.info.fps
        x = int((0.5 + 0.4 * np.sin(t)) * w)
        y = int((0.5 + 0.3 * np.cos(0.7 * t)) * h)
        radius = max(8, min(w, h) // 10)
        cv2.circle(frame, (x, y), radius, (255, 255, 255), -1)
        cv2.rectangle(frame, (w - x - radius, h - y - radius), (w - x + radius, h - y + radius),
                      (0, 0, 0), -1)  # fmt: skip
        cv2.putText(frame, f"edged {self._index}", (16, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.2,
                    (255, 255, 255), 2)  # fmt: skip
        self._index += 1
        return frame

    def close(self) -> None:
        pass
