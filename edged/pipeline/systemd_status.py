"""What systemd hears: READY=1 once the first frame is out (or after ready_without_frames_s),
watchdog pings while every stage process turns its loop, a STATUS line every few seconds, and
RELOADING=1/READY=1 around a reload."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edged.pipeline.liveness import Liveness
from edged.sdnotify import SystemdNotifier

log = logging.getLogger("edged.pipeline.supervisor")  # the supervisor's lines, as before

STATUS_EVERY_S = 5.0


class SystemdReporter:
    def __init__(
        self,
        notifier: SystemdNotifier,
        liveness: Liveness,
        ready_without_frames_s: float,
        started_at: float,
        status_line: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.liveness = liveness
        self._ready_without_frames_s = ready_without_frames_s
        self._started_at = started_at
        self._status_line = status_line
        self._clock = clock
        self.published_ready = False  # READY=1 sent: the first frame, or ready_without_frames_s
        self._last_watchdog = 0.0
        self._stuck_said = False
        self._last_status = 0.0

    def tick(self, published: int, running: list[str], why_not_ready: Callable[[], str]) -> None:
        """Every supervisor turn. ``running``: the stage processes alive now."""
        now = self._clock()
        if not self.published_ready:
            # From the daemon's own start, as systemd counts TimeoutStartSec: model loading can
            # take a good part of it before the pipeline serves.
            in_service = now - self._started_at
            if published > 0:
                log.info("ready: first frame published")
            elif in_service >= self._ready_without_frames_s:
                # Rather than let systemd time the start out and restart in a loop: the daemon
                # itself keeps retrying the source, and STATUS says why no frame came.
                log.warning("no frame published %.0f s after start (%s); telling systemd the "
                            "daemon is up, it keeps retrying", in_service,
                            why_not_ready())  # fmt: skip
            else:
                return
            self.published_ready = True
            self.notifier.ready(self._status_line())
        interval = self.notifier.watchdog_interval()
        if interval and now - self._last_watchdog >= interval:
            # Pings vouch that every stage process still turns its loop (liveness), not that
            # frames flow: a source that is down or ended is /readyz's business, and restarting
            # the daemon would not bring it back. A stuck process stops them.
            stuck = self.liveness.stuck(running, now)
            if not stuck:
                self.notifier.watchdog()
                self._last_watchdog = now
                self._stuck_said = False
            elif not self._stuck_said:  # at the first ping withheld, before systemd acts
                log.error("no report from the %s process(es) for %.0f s: watchdog pings stop",
                          ", ".join(stuck), self.liveness.silence_s)  # fmt: skip
                self._stuck_said = True
        if now - self._last_status >= STATUS_EVERY_S and self.published_ready:
            self._last_status = now
            self.notifier.status(self._status_line())

    def reloading(self) -> None:
        if self.published_ready:  # before READY=1, a reload must not send it early
            self.notifier.reloading()

    def reloaded(self) -> None:
        if self.published_ready:
            self.notifier.ready(self._status_line())

    def stopping(self) -> None:
        self.notifier.stopping()
