"""What the MQTT bridge process is started with (no paho import: the supervisor reads this)."""

from __future__ import annotations

from dataclasses import dataclass

from edged.integrations.config import MqttConfig
from edged.integrations.mqtt.discovery import TrackingNames

__all__ = ["BridgeSetup", "Curve", "TrackingNames"]

Curve = tuple[str, str | None]  # publisher's secret key file, the bridge's (or None)


@dataclass(frozen=True)
class BridgeSetup:
    """What the bridge process is started with (picklable: it crosses a spawn)."""

    mqtt: MqttConfig
    camera_id: str
    publish_endpoint: str
    control_endpoint: str
    log_level: str = "INFO"
    curve: Curve | None = None  # the publisher's CURVE, when it has one
    tracking: TrackingNames | None = None  # tracking on: its zones and lines
