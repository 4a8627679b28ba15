"""Who is subscribed to what on an XPUB socket, from its (un)subscription events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import zmq

# Distinct prefixes a tracker keeps at most (a peer may send any number).
MAX_PREFIXES = 64


def configure_xpub(sock: zmq.Socket) -> None:
    """Report every subscribe and every unsubscribe (exact counts, not just first/last)."""
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    sock.setsockopt(zmq.XPUB_VERBOSER, 1)


class SubscriptionTracker:
    """Subscription counts per topic prefix, fed with the events an XPUB socket receives.

    Bounded whatever peers send: with ``topics`` only prefixes of those topics are kept (the
    only ones :meth:`matching` can count for them), and never more than ``max_prefixes``; the
    rest is counted in :attr:`ignored` and otherwise dropped.
    """

    def __init__(
        self, topics: Iterable[bytes] | None = None, max_prefixes: int = MAX_PREFIXES
    ) -> None:
        self.prefixes: Counter[bytes] = Counter()
        self.topics = None if topics is None else tuple(topics)
        self.max_prefixes = max_prefixes
        self.ignored = 0

    def _keeps(self, prefix: bytes) -> bool:
        if prefix in self.prefixes:
            return True
        if self.topics is not None and not any(t.startswith(prefix) for t in self.topics):
            return False
        return len(self.prefixes) < self.max_prefixes

    def feed(self, event: bytes) -> tuple[int, bytes]:
        """Apply one event; returns (+1 subscribe / -1 unsubscribe / 0 other, prefix)."""
        kind, prefix = event[:1], bytes(event[1:])
        if kind == b"\x01":
            if not self._keeps(prefix):
                self.ignored += 1
                return 0, prefix
            self.prefixes[prefix] += 1
            return 1, prefix
        if kind == b"\x00" and self.prefixes[prefix] > 0:
            self.prefixes[prefix] -= 1
            if not self.prefixes[prefix]:
                del self.prefixes[prefix]
            return -1, prefix
        return 0, prefix

    def matching(self, topic: bytes) -> int:
        """How many subscriptions would receive a message on ``topic`` (prefix match)."""
        return sum(n for prefix, n in self.prefixes.items() if topic.startswith(prefix))
