"""A ring of fixed-size slots in POSIX shared memory: how frames and tensors cross processes.

Only slot indices and small metadata travel over sockets. Each slot starts with a header holding
the sequence number written last, so a reader can verify that the slot still holds the frame its
metadata names (a cheap seqlock; it matters only if a slot were reused while being read).

The supervisor creates (and finally unlinks) every segment, so a stage killed with ``kill -9``
cannot leak one; stages only attach.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

_HEADER = 64  # bytes per slot: int64 seq, then padding to keep data 64-byte aligned
_ALIGN = 64


@dataclass(frozen=True)
class RingSpec:
    """What a stage needs to attach to a ring created by the supervisor."""

    name: str  # shared-memory segment name (no leading slash)
    slots: int
    slot_bytes: int

    @property
    def stride(self) -> int:
        return _HEADER + (self.slot_bytes + _ALIGN - 1) // _ALIGN * _ALIGN

    @property
    def total_bytes(self) -> int:
        return self.stride * self.slots


class SharedRing:
    """Attach to (or create) a slot ring; ``array()`` gives zero-copy NumPy views of a slot."""

    def __init__(self, spec: RingSpec, create: bool = False) -> None:
        self.spec = spec
        self._shm = shared_memory.SharedMemory(
            name=spec.name, create=create, size=spec.total_bytes if create else 0
        )
        if self._shm.size < spec.total_bytes:
            raise ValueError(f"shared memory {spec.name} is smaller than its spec")
        self._headers = [
            np.ndarray((1,), np.int64, self._shm.buf, offset=i * spec.stride)
            for i in range(spec.slots)
        ]
        if create:
            for header in self._headers:
                header[0] = -1

    def array(
        self, slot: int, shape: tuple[int, ...], dtype: np.dtype | str, offset: int = 0
    ) -> np.ndarray:
        """A view of ``slot`` (starting ``offset`` bytes into it) as an array; no copy."""
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dt.itemsize
        if offset + nbytes > self.spec.slot_bytes:
            raise ValueError(
                f"{nbytes} bytes at offset {offset} do not fit a {self.spec.slot_bytes}-byte slot "
                f"of ring {self.spec.name}"
            )
        start = slot * self.spec.stride + _HEADER + offset
        return np.ndarray(shape, dt, self._shm.buf, offset=start)

    def mark(self, slot: int, seq: int) -> None:
        """Record that ``slot`` now holds frame ``seq`` (call after writing its data)."""
        self._headers[slot][0] = seq

    def holds(self, slot: int, seq: int) -> bool:
        return int(self._headers[slot][0]) == seq

    def latest_seq(self) -> int:
        """The highest sequence number any slot holds (-1 for a fresh ring)."""
        return max((int(h[0]) for h in self._headers), default=-1)

    def close(self) -> None:
        self._headers = []
        # A NumPy view may still be alive somewhere; the mapping then goes with the process.
        with contextlib.suppress(BufferError):
            self._shm.close()

    def unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._shm.unlink()


def create_ring(spec: RingSpec) -> SharedRing:
    return SharedRing(spec, create=True)


def attach_ring(spec: RingSpec) -> SharedRing:
    return SharedRing(spec, create=False)


def aligned(nbytes: int) -> int:
    return (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
