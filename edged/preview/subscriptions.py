"""Who is subscribed to what on an XPUB socket, from its (un)subscription events."""

from __future__ import annotations

from collections import Counter

import zmq


def configure_xpub(sock: zmq.Socket) -> None:
    """Report every subscribe and every unsubscribe (exact counts, not just first/last)."""
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    sock.setsockopt(zmq.XPUB_VERBOSER, 1)


class SubscriptionTracker:
    """Subscription counts per topic prefix, fed with the events an XPUB socket receives."""

    def __init__(self) -> None:
        self.prefixes: Counter[bytes] = Counter()

    def feed(self, event: bytes) -> tuple[int, bytes]:
        """Apply one event; returns (+1 subscribe / -1 unsubscribe / 0 other, prefix)."""
        kind, prefix = event[:1], bytes(event[1:])
        if kind == b"\x01":
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
