"""The MQTT bridge process: the camera's ZeroMQ detections in, MQTT state and discovery out.

It is one more ZeroMQ subscriber of the daemon, so the frame path never waits on a broker: a
slow or absent broker costs this process only. Nothing queues without bound: the detections
subscriber keeps 10 messages and reads the newest (the state is "now", not a history), the
track events subscriber (with tracking) at most 1000 (each event counts); while the broker
is away no state is published at all (paho's own queue is capped at ``mqtt.max_queued``), and
paho reconnects with an exponential backoff between ``reconnect_min_s`` and
``reconnect_max_s``. On every (re)connect it publishes availability, discovery and the current
state again, retained, so a broker that lost them (restarted without persistence) gets them
back. The variant select of Home Assistant reaches the daemon as an ``edged ctl swap`` over the
control socket, from a worker thread so the state keeps flowing while a model loads.

Client library: paho-mqtt 2.x (Eclipse Foundation; what Home Assistant itself uses). Its
threaded network loop with built-in reconnect/backoff, last will, TLS and a bounded outgoing
queue are all this bridge needs; aiomqtt wraps the same client for asyncio, which edged does not
use, and gmqtt/amqtt bring an event loop too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import zmq
from paho.mqtt.enums import CallbackAPIVersion

from edged.control import NotRunning, call, configure_curve_client
from edged.integrations.config import MqttConfig
from edged.integrations.mqtt.bridge_setup import BridgedCamera, BridgeSetup
from edged.integrations.mqtt.discovery import (
    OFFLINE,
    ONLINE,
    Topics,
    TrackingNames,
    discovery_messages,
)
from edged.integrations.mqtt.metrics import BridgeCounters
from edged.integrations.mqtt.state import CameraState
from edged.publish.schema import decode_payload, topic_for
from edged.publish.subscriber import newest_queued
from edged.tracking.events import events_topic_for

log = logging.getLogger(__name__)

SWAP_TIMEOUT_S = 120.0
VARIANTS_RETRY_S = 10.0  # asking the daemon for its variants again after no answer
MAX_VARIANT_BYTES = 64


def read_password(path: str) -> str:
    """The first line of ``path`` (a trailing newline is not part of the password)."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()[0]
    except IndexError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"mqtt.password_file {path}: cannot read: {exc}") from None


def make_client(cfg: MqttConfig, camera_id: str, client_id: str | None = None) -> mqtt.Client:
    """A paho client with the last will, credentials, TLS and limits of ``cfg`` (not connected)."""
    client_id = client_id or cfg.client_id or f"edged-{camera_id}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    topics = Topics.of(cfg, camera_id)
    client.will_set(topics.availability, OFFLINE, qos=cfg.qos, retain=True)
    if cfg.username:
        password = read_password(cfg.password_file) if cfg.password_file else None
        client.username_pw_set(cfg.username, password)
    if cfg.tls.enabled:
        client.tls_set(ca_certs=cfg.tls.ca_file, certfile=cfg.tls.cert_file,
                       keyfile=cfg.tls.key_file, cert_reqs=ssl.CERT_REQUIRED)  # fmt: skip
        client.tls_insecure_set(cfg.tls.insecure)
    client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
    client.max_queued_messages_set(cfg.max_queued)
    client.max_inflight_messages_set(min(20, cfg.max_queued))
    return client


class Bridge:
    """Connects a camera's detections to MQTT; ``client`` and ``control_endpoint`` are its
    collaborators (a paho client, the daemon's control socket)."""

    def __init__(self, cfg: MqttConfig, camera_id: str, client: mqtt.Client,
                 control_endpoint: str, counters: BridgeCounters | None = None,
                 tracking: TrackingNames | None = None) -> None:  # fmt: skip
        self.counters = counters
        self.tracking = tracking
        self.cfg = cfg
        self.camera_id = camera_id
        self.client = client
        self.control_endpoint = control_endpoint
        self.topics = Topics.of(cfg, camera_id)
        self.state = CameraState(tuple(cfg.labels), cfg.state_interval_s, cfg.min_interval_s)
        if tracking is not None:
            self.state.track(tracking.zones, tracking.lines)
        self.variants: list[str] | None = None  # from the daemon's status, once known
        self._fetching: Future[list[str] | None] | None = None
        self._next_fetch = 0.0
        self._connected = threading.Event()  # set by paho's thread, handled by ours
        self._announce = threading.Event()
        self._closing = False
        self._swaps: queue.Queue[str] = queue.Queue(maxsize=1)  # the newest choice wins
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqtt-control")
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message

    # -- paho callbacks (its network thread) -----------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _properties: Any) -> None:  # fmt: skip
        if reason.is_failure:
            log.warning("MQTT broker %s:%d refused the connection: %s", self.cfg.host,
                        self.cfg.port, reason)  # fmt: skip
            return
        log.info("connected to MQTT broker %s:%d", self.cfg.host, self.cfg.port)
        client.subscribe(self.topics.variant_set, qos=self.cfg.qos)
        self._connected.set()
        self._count("connects")
        self._set_connected(1)
        self._announce.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:  # fmt: skip
        if self._connected.is_set() and not self._closing:
            log.warning("MQTT broker connection lost (%s); reconnecting with backoff", reason)
        self._connected.clear()
        self._set_connected(0)

    def _count(self, field: str) -> None:
        if self.counters is not None:
            self.counters.add(field)

    def _set_connected(self, value: int) -> None:
        if self.counters is not None:
            self.counters.set("connected", value)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.topics.variant_set:
            return
        try:
            variant = msg.payload[: MAX_VARIANT_BYTES + 1].decode("utf-8").strip()
        except UnicodeDecodeError:
            variant = ""
        if not variant or len(variant) > MAX_VARIANT_BYTES:
            log.warning("ignored a variant command that is not a variant name")
            return
        with contextlib.suppress(queue.Empty):  # a choice not started yet: the newer one wins
            self._swaps.get_nowait()
        self._swaps.put_nowait(variant)

    # -- the bridge's own thread -----------------------------------------------------------------

    def on_detections(self, message: dict[str, Any], now: float) -> None:
        self.state.update(message, now)

    def on_event(self, message: dict[str, Any], _now: float) -> None:
        self.state.apply_event(message)

    def tick(self, now: float) -> None:
        """Announce after a (re)connect, start a requested swap, publish the state when due."""
        if self.variants is None and self._fetching is None and now >= self._next_fetch:
            # On the worker: a control socket that does not answer must not stall the state.
            self._fetching = self._worker.submit(self._fetch_variants)
            self._next_fetch = now + VARIANTS_RETRY_S
        if self._fetching is not None and self._fetching.done():
            self.variants, self._fetching = self._fetching.result(), None
            if self.variants is not None:
                self._announce.set()  # the select appears
        if self._announce.is_set() and self._connected.is_set():
            self._announce.clear()
            self._publish_announcement()
        try:
            variant = self._swaps.get_nowait()
        except queue.Empty:
            pass
        else:
            self._worker.submit(self._swap, variant)
        if self._connected.is_set() and (snapshot := self.state.due(now)) is not None:
            self._publish(self.topics.state, json.dumps(snapshot))

    def _publish(self, topic: str, payload: str) -> None:
        info = self.client.publish(topic, payload, qos=self.cfg.qos, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:  # not connected any more, or paho's queue is full
            log.debug("MQTT publish to %s not queued: %s", topic, mqtt.error_string(info.rc))
            self._count("refused")
        else:
            self._count("published")

    def _publish_announcement(self) -> None:
        self._publish(self.topics.availability, ONLINE)
        if self.cfg.discovery:
            variants = self.variants or []
            entities = discovery_messages(self.cfg, self.camera_id, variants, self.tracking)
            for topic, payload in entities:
                self._publish(topic, json.dumps(payload))
        self.state.forget_published()

    def _fetch_variants(self) -> list[str] | None:
        """The manifest's variants from the daemon (None: ask again later)."""
        try:
            status = call(self.control_endpoint, "status", timeout_s=5.0)
        except (TimeoutError, NotRunning, zmq.ZMQError, OSError, ValueError) as exc:
            log.debug("control status: %s", exc)
            return None
        return [str(v) for v in status.get("variants") or []]

    def _swap(self, variant: str) -> None:
        if variant == self.state.model.get("variant"):
            return
        log.info("variant %s chosen over MQTT: swapping", variant)
        try:
            result = call(self.control_endpoint, "swap", variant, timeout_s=SWAP_TIMEOUT_S)
        except (TimeoutError, NotRunning, zmq.ZMQError, OSError, ValueError) as exc:
            log.error("swap to %s over MQTT failed: %s", variant, exc)
            return
        if not result.get("ok"):
            # The select follows the state topic, so Home Assistant shows the active variant.
            log.error("swap to %s over MQTT refused: %s", variant, result.get("error"))

    def close(self, timeout_s: float = 2.0) -> None:
        """Say offline (retained) while still connected, then disconnect."""
        self._closing = True
        self._worker.shutdown(wait=False, cancel_futures=True)
        if self._connected.is_set():
            info = self.client.publish(self.topics.availability, OFFLINE, qos=self.cfg.qos,
                                       retain=True)  # fmt: skip
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                info.wait_for_publish(timeout_s)
        self.client.disconnect()
        self.client.loop_stop()


MAX_EVENTS_PER_TURN = 1000


def _subscriber(setup: BridgeSetup, topic: bytes, hwm: int) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, hwm)
    try:
        if setup.curve is not None:
            server, client = setup.curve
            configure_curve_client(sock, Path(server), Path(client) if client else None)
        sock.connect(setup.publish_endpoint)
    except (ValueError, OSError, zmq.ZMQError):
        sock.close(0)
        raise
    sock.setsockopt(zmq.SUBSCRIBE, topic)
    return sock


@dataclass
class CameraLink:
    """One camera's side of the bridge: its MQTT connection (own client id and last will, so
    Home Assistant sees each camera go offline on its own) and its ZeroMQ subscriptions."""

    bridge: Bridge
    detections: zmq.Socket
    events: zmq.Socket | None  # with tracking: its events

    # Subscriptions are prefixes (detections.cam1 also receives cam10's): each message is
    # checked against the camera's exact topic.
    @property
    def topics(self) -> tuple[bytes, bytes]:
        camera_id = self.bridge.camera_id
        return topic_for(camera_id), events_topic_for(camera_id)

    @property
    def sockets(self) -> list[zmq.Socket]:
        return [s for s in (self.events, self.detections) if s is not None]

    def pump(self, ready: dict[zmq.Socket, int]) -> None:
        """Read what is waiting: every event (bounded per turn), the newest detections."""
        # Events first: they are deltas (every one counts), and a frame's events follow it.
        detections_topic, events_topic = self.topics
        if self.events is not None and self.events in ready:
            for _ in range(MAX_EVENTS_PER_TURN):
                try:
                    parts = self.events.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if parts[0] == events_topic:
                    _read(self.bridge.on_event, parts)
        if self.detections in ready:
            first = self.detections.recv_multipart()
            parts, _skipped = newest_queued(self.detections, first, detections_topic)
            if parts:
                _read(self.bridge.on_detections, parts)


def open_link(setup: BridgeSetup, camera: BridgedCamera,
              counters: BridgeCounters | None) -> CameraLink:  # fmt: skip
    """The connection and subscriptions of ``camera`` (not connected yet)."""
    cfg, camera_id = setup.mqtt, camera.camera_id
    client = make_client(cfg, camera_id, setup.client_id(camera_id))
    events = None
    if camera.tracking is not None:
        events = _subscriber(setup, events_topic_for(camera_id), 1000)
    try:
        # Detections: the newest message is what matters; the rest drops at the mark.
        detections = _subscriber(setup, topic_for(camera_id), 10)
    except BaseException:
        if events is not None:
            events.close(0)
        raise
    bridge = Bridge(cfg, camera_id, client, setup.control_endpoint, counters, camera.tracking)
    return CameraLink(bridge, detections, events)


def run(setup: BridgeSetup, stop: threading.Event, parent_pid: int | None = None,
        counters: BridgeCounters | None = None) -> int:  # fmt: skip
    """Bridge every camera until ``stop`` is set (or the parent process is gone); the exit
    status."""
    cfg = setup.mqtt
    links: list[CameraLink] = []
    try:
        for camera in setup.cameras:
            links.append(open_link(setup, camera, counters))
    except (ValueError, ssl.SSLError, OSError, zmq.ZMQError) as exc:
        log.error("MQTT: %s", exc)
        for link in links:
            for sock in link.sockets:
                sock.close(0)
        return 2
    poller = zmq.Poller()
    for link in links:
        for sock in link.sockets:
            poller.register(sock, zmq.POLLIN)
        link.bridge.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        link.bridge.client.loop_start()  # connects, and reconnects with backoff, on its thread
    log.info("MQTT bridge for %s: broker %s:%d, topics %s/<camera>/...",
             ", ".join(c.camera_id for c in setup.cameras), cfg.host, cfg.port,
             cfg.base_topic)  # fmt: skip
    try:
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("the daemon is gone; stopping the MQTT bridge")
                break
            ready = dict(poller.poll(100))
            now = time.monotonic()
            for link in links:
                link.pump(ready)
                link.bridge.tick(now)
    finally:
        for link in links:
            link.bridge.close()
            for sock in link.sockets:
                sock.close(0)
    return 0


def _read(handle: Callable[[dict[str, Any], float], None], parts: list[bytes]) -> None:
    try:
        handle(decode_payload(parts[1]), time.monotonic())
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("ignored a message: %r", exc)


def main(setup: BridgeSetup, counters: BridgeCounters | None = None) -> None:
    """Entry point of the spawned bridge process."""
    from setproctitle import setproctitle

    from edged.logs import configure_logging

    setproctitle("edged: mqtt")  # as the stage processes are named in ps and top
    configure_logging(setup.log_level, process_name="mqtt")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    raise SystemExit(run(setup, stop, parent_pid=os.getppid(), counters=counters))
