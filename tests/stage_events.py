"""Stage events as the stages send them, for tests that feed the supervisor's bookkeeping."""

from __future__ import annotations

from edged.pipeline.messages import PublishedFrame, SourceConnected, Stats


def connected(fps: float = 30.0, reconnect: bool = False) -> SourceConnected:
    return SourceConnected(width=640, height=480, fps=fps, kind="file", uri="clip.mp4",
                           paced_by="edged", reconnect=reconnect)  # fmt: skip


def published_frame(seq: int, at: float, model_key: str, class_ids: tuple[int, ...] = (),
                    scores: tuple[float, ...] = (),
                    timings: tuple[tuple[str, float, float], ...] = (),
                    captured: float | None = None) -> PublishedFrame:  # fmt: skip
    """A frame the publish stage sent out at ``at`` (monotonic)."""
    return PublishedFrame(seq=seq, captured=at - 0.1 if captured is None else captured,
                          published=at, timings=timings, model_key=model_key,
                          class_ids=class_ids, scores=scores, bytes=100)  # fmt: skip


def stats(*records: PublishedFrame) -> Stats:
    """The publish stage's counters flush, carrying the records of the frames it published."""
    return Stats({"ok": len(records), "dropped": 0, "error": 0}, 0, records)
