"""The supervisor's handle on the MQTT bridge process: start, restart with backoff, stop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from edged.config import EdgedConfig
from edged.integrations.mqtt.bridge_setup import BridgedCamera, BridgeSetup, TrackingNames
from edged.integrations.mqtt.metrics import BridgeCounters, MqttCollector
from edged.pipeline.backoff import Backoff
from edged.pipeline.kept_process import KeptProcess

log = logging.getLogger(__name__)

RESTART_BACKOFF = Backoff(initial_s=1.0, max_s=60.0)
STABLE_AFTER_S = 60.0  # a bridge that ran this long starts the backoff over when it dies


def bridged_cameras(config: EdgedConfig) -> tuple[BridgedCamera, ...]:
    """Every camera of ``config``, with the zone and line names its tracking has."""
    cameras = []
    for camera in config.camera_list():
        tracking = config.tracking_for(camera)
        names = TrackingNames(tuple(z.name for z in tracking.zones),
                              tuple(line.name for line in tracking.lines))  # fmt: skip
        cameras.append(BridgedCamera(camera.id, names if tracking.enabled else None))
    return tuple(cameras)


def bridge_setup(config: EdgedConfig, publish_endpoint: str, control_endpoint: str) -> BridgeSetup:
    assert config.mqtt is not None
    publish = config.publish
    # The publisher's CURVE: its public key (read from its secret key file, which the daemon
    # owns) and the bridge's key pair (None: a throwaway one, allow_any_client).
    curve = (publish.curve_server_secret_key_file, config.mqtt.curve_client_secret_key_file)
    return BridgeSetup(
        config.mqtt, bridged_cameras(config), publish_endpoint, control_endpoint,
        config.runtime.log_level, curve if publish.curve else None,
    )  # fmt: skip


class MqttBridgeProcess:
    """A bridge process that is kept running: a crash never touches the pipeline, and the
    next one starts after a doubling delay (1 s .. 60 s), reset once one ran for a minute."""

    def __init__(self, config: EdgedConfig, publish_endpoint: str, control_endpoint: str,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        assert config.mqtt is not None
        self.kept = KeptProcess("MQTT bridge", "edged-mqtt", RESTART_BACKOFF, STABLE_AFTER_S,
                                clock)  # fmt: skip
        self.counters = BridgeCounters(self.kept.ctx)  # shared with the bridge's processes
        self.setup = bridge_setup(config, publish_endpoint, control_endpoint)

    @classmethod
    def start_for(cls, config: EdgedConfig, publish_endpoint: str, control_endpoint: str,
                  registry: CollectorRegistry) -> MqttBridgeProcess | None:  # fmt: skip
        """Started (its metrics in ``registry``) when the config has an ``mqtt:`` section."""
        if config.mqtt is None:
            return None
        bridge = cls(config, publish_endpoint, control_endpoint)
        registry.register(MqttCollector(bridge.counters))
        bridge.start()
        return bridge

    def use_config(self, config: EdgedConfig) -> None:
        """A reload changed the cameras (or their tracking): a bridge for the new set, so
        Home Assistant gets the added cameras' devices and the removed ones go offline."""
        setup = bridge_setup(config, self.setup.publish_endpoint, self.setup.control_endpoint)
        if setup.cameras == self.setup.cameras:
            return
        self.setup = setup
        if self.kept.started:
            log.info("MQTT bridge: cameras changed; starting it again")
            self.stop()
            self.start()

    def start(self) -> None:
        from edged.integrations.mqtt.bridge import main

        pid = self.kept.start(main, self.setup, self.counters)
        log.info("started the MQTT bridge (pid %d)", pid)

    def check(self) -> None:
        """Restart a bridge that died, after the backoff delay (call it from the main loop)."""
        if self.kept.due():
            self.counters.set("connected", 0)  # what the dead one left
            self.counters.add("restarts")
            self.start()

    @property
    def pid(self) -> int | None:
        return self.kept.pid

    def stop(self, timeout_s: float = 5.0) -> None:
        self.kept.stop(timeout_s)  # SIGTERM: it says offline on the broker, then exits
