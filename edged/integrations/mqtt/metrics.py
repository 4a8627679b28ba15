"""The bridge's counters, shared with the supervisor, and their Prometheus exposition.

The bridge runs in its own process; the supervisor owns /metrics. A few integers in shared
memory (written by the bridge, read at scrape time) carry its state across, with no channel
to drain and nothing that can back up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

FIELDS = ("connected", "connects", "published", "refused", "restarts")


class BridgeCounters:
    """``connected`` (0/1), and counts of connections, messages handed to the client, messages
    it refused (not connected, or its queue full) and bridge restarts."""

    def __init__(self, ctx: Any) -> None:
        self._values = ctx.Array("q", len(FIELDS))  # with its own lock

    def add(self, field: str, amount: int = 1) -> None:
        with self._values.get_lock():
            self._values[FIELDS.index(field)] += amount

    def set(self, field: str, value: int) -> None:
        self._values[FIELDS.index(field)] = value

    def get(self, field: str) -> int:
        return int(self._values[FIELDS.index(field)])


class MqttCollector(Collector):
    def __init__(self, counters: BridgeCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        c = self.counters
        yield GaugeMetricFamily(
            "edged_mqtt_connected",
            "1 while the MQTT bridge is connected to the broker.",
            value=c.get("connected"),
        )
        yield CounterMetricFamily(
            "edged_mqtt_connects",
            "Connections made to the MQTT broker (more: reconnects).",
            value=c.get("connects"),
        )
        messages = CounterMetricFamily(
            "edged_mqtt_messages",
            "MQTT messages by outcome: published (handed to the client), refused (not "
            "connected, or its queue of max_queued full: dropped).",
            labels=["outcome"],
        )
        messages.add_metric(["published"], c.get("published"))
        messages.add_metric(["refused"], c.get("refused"))
        yield messages
        yield CounterMetricFamily(
            "edged_mqtt_bridge_restarts",
            "MQTT bridge processes restarted after exiting.",
            value=c.get("restarts"),
        )
