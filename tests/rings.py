"""A scratch shared-memory ring for tests that need a real frames ring."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from edged.pipeline.ring import RingSpec, SharedRing, create_ring


@contextmanager
def scratch_ring(prefix: str, slots: int, slot_bytes: int) -> Iterator[SharedRing]:
    """A ring named ``<prefix>_<pid>_<random>`` (not the daemon's ``edged_`` prefix: a daemon
    starting meanwhile must not take it for stale), closed and unlinked afterwards."""
    ring = create_ring(RingSpec(f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}", slots,
                                slot_bytes))  # fmt: skip
    try:
        yield ring
    finally:
        ring.close()
        ring.unlink()
