"""The ``detector:`` (Frigate) and ``mqtt:`` (Home Assistant) sections of the config."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    # Same strictness as edged.config._Strict (not imported: edged.config imports this module).
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )


class DetectorConfig(_Section):
    """`edged serve-detector`: Frigate's zmq detector protocol over ZeroMQ REQ/REP."""

    endpoint: str | None = Field(
        None,
        description="ZeroMQ address Frigate's zmq detector connects to; default "
        "ipc://<runtime_dir>/detector.sock.",
    )
    control_endpoint: str | None = Field(
        None,
        description="ZeroMQ address for `edged ctl --endpoint` (status, swap); default "
        "ipc://<runtime_dir>/detector-control.sock (mode 0600). ipc:// only: control is local.",
    )
    timeout_ms: int = Field(
        200,
        gt=0,
        description="Frigate's request timeout: a request older than this when its turn comes "
        "gets an empty reply at once (counted 'expired'), one answered later is counted 'late'.",
    )
    pixel_format: Literal["rgb", "bgr"] = Field(
        "rgb", description="Channel order of the tensors Frigate sends (its input_pixel_format)."
    )
    float_range: Literal["0-255", "0-1"] = Field(
        "0-255",
        description="Value range of float32 tensors: 0-255 for Frigate's input_dtype float, "
        "0-1 for float_denorm. uint8 tensors are always 0-255.",
    )
    max_request_mb: float = Field(
        8.0,
        gt=0,
        le=64,
        description="Largest request accepted (bigger: ZeroMQ drops the peer). 640x640 float32 "
        "is 4.7 MiB; at most 64 MiB of requests wait in edged at once.",
    )

    @field_validator("endpoint")
    @classmethod
    def _zmq_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("tcp://", "ipc://")):
            raise ValueError("must start with tcp:// or ipc://")
        return value

    @field_validator("control_endpoint")
    @classmethod
    def _local(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("ipc://"):
            raise ValueError("must start with ipc:// (an unauthenticated swap stays local)")
        return value


# MQTT topic levels we build from config: no wildcards, no empty levels, no leading '/'.
_TOPIC = re.compile(r"^[^#+/\s][^#+\s]*$")
_LABEL = re.compile(r"^[A-Za-z0-9 _.-]{1,64}$")


class MqttTlsConfig(_Section):
    enabled: bool = Field(False, description="Connect with TLS (usually port 8883).")
    ca_file: str | None = Field(None, description="CA bundle; default: the system's.")
    cert_file: str | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: str | None = Field(None, description="Client key (mutual TLS).")
    insecure: bool = Field(
        False, description="Skip the server's hostname check (self-signed test brokers only)."
    )

    @model_validator(mode="after")
    def _pair(self) -> MqttTlsConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttConfig(_Section):
    """Publish this camera's state to an MQTT broker, with Home Assistant discovery."""

    host: str = Field(..., min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
    tls: MqttTlsConfig = Field(default_factory=MqttTlsConfig)
    username: str | None = Field(None, description="Broker user name.")
    password_file: str | None = Field(
        None, description="File whose first line is the password (kept out of the config)."
    )
    curve_client_secret_key_file: str | None = Field(
        None,
        description="The bridge's CURVE key pair (secret key file) for a publisher that admits "
        "only the keys in publish.curve_authorized_keys_dir: put its public key there. Not "
        "needed with publish.allow_any_client or without publisher CURVE.",
    )
    client_id: str | None = Field(
        None, max_length=64, description="MQTT client id; default edged-<camera_id>."
    )
    base_topic: str = Field("edged", description="State topics: <base_topic>/<camera_id>/...")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix.")
    discovery: bool = Field(True, description="Publish retained Home Assistant discovery.")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of every message edged publishes.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive.")
    labels: list[str] = Field(
        default_factory=lambda: ["person", "bicycle", "car", "motorcycle", "bus", "truck",
                                 "bird", "cat", "dog"],
        max_length=100,
        description="Labels that get a count sensor and a 'detected now' binary sensor (other "
        "labels are still counted in the state JSON).",
    )  # fmt: skip
    state_interval_s: float = Field(
        5.0, gt=0, description="Republish the state (FPS, latency) at least this often."
    )
    min_interval_s: float = Field(
        0.2, ge=0, description="Publish a changed count at most this often."
    )
    max_queued: int = Field(
        100, ge=1, le=10000, description="Messages paho may hold for the broker; more are dropped."
    )
    reconnect_min_s: float = Field(1.0, gt=0, description="First wait before reconnecting.")
    reconnect_max_s: float = Field(60.0, gt=0, description="Longest wait between reconnects.")

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: list[str]) -> list[str]:
        for label in labels:
            if not _LABEL.match(label):
                raise ValueError(f"label {label!r}: letters, digits, spaces, _ . - (1-64)")
        return labels

    @field_validator("base_topic", "discovery_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not _TOPIC.match(value) or value.endswith("/") or "//" in value:
            raise ValueError("a topic without wildcards (# +), spaces or empty levels")
        return value

    @model_validator(mode="after")
    def _password_needs_user(self) -> MqttConfig:
        if self.password_file and not self.username:
            raise ValueError("password_file needs a username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        return self


def mqtt_publish_errors(
    mqtt: MqttConfig | None, publish_authorized_keys_dir: str | None
) -> list[tuple[str, str]]:
    """The bridge must be able to subscribe: a publisher admitting only listed keys needs one."""
    if mqtt is None or not publish_authorized_keys_dir or mqtt.curve_client_secret_key_file:
        return []
    return [("mqtt.curve_client_secret_key_file", "the publisher admits only the keys in "
             "publish.curve_authorized_keys_dir: give the bridge a key pair (this field: its "
             "secret key file) and put its public key in that directory")]  # fmt: skip
