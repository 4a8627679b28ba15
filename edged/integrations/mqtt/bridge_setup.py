"""What the MQTT bridge process is started with (no paho import: the supervisor reads this)."""

from __future__ import annotations

from dataclasses import dataclass

from edged.integrations.config import MqttConfig
from edged.integrations.mqtt.discovery import TrackingNames

__all__ = ["BridgeSetup", "BridgedCamera", "Curve", "TrackingNames"]

Curve = tuple[str, str | None]  # publisher's secret key file, the bridge's (or None)


@dataclass(frozen=True)
class BridgedCamera:
    """One camera the bridge speaks for: a Home Assistant device of its own."""

    camera_id: str
    tracking: TrackingNames | None = None  # tracking on: its zones and lines


@dataclass(frozen=True)
class BridgeSetup:
    """What the bridge process is started with (picklable: it crosses a spawn)."""

    mqtt: MqttConfig
    cameras: tuple[BridgedCamera, ...]
    publish_endpoint: str
    control_endpoint: str
    log_level: str = "INFO"
    curve: Curve | None = None  # the publisher's CURVE, when it has one

    def client_id(self, camera_id: str) -> str:
        """The MQTT client id of ``camera_id``'s connection: ids must differ per connection
        (a broker drops the older of two), so a configured id gets the camera's as suffix when
        there are several cameras."""
        configured = self.mqtt.client_id
        if configured is None:
            return f"edged-{camera_id}"
        return configured if len(self.cameras) == 1 else f"{configured}-{camera_id}"
