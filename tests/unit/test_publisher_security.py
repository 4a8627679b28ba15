"""What a peer on publish.endpoint can reach and make the publisher hold (issue 19 item 1).

Real ZeroMQ sockets; the preview tap with a real shared-memory ring (fixtures from
test_preview_tap)."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from edged.config import ConfigError, PublishConfig, is_loopback_endpoint, load_config, parse_config
from edged.control import check_curve_keys
from edged.pipeline.stages.preview_tap import RESEND_INTERVAL_S
from edged.preview.config import PreviewConfig
from edged.preview.subscriptions import MAX_PREFIXES, SubscriptionTracker, configure_xpub
from edged.publish.publisher import MAX_SUBSCRIPTION_BYTES, open_publisher
from tests.paths import REPO_ROOT
from tests.unit.test_preview_tap import ctx, make_tap, offer, put_frame, receive_all, ring  # noqa: F401

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_publish_on_loopback_without_frames(path: Path):
    config = load_config(path)
    assert is_loopback_endpoint(config.publish.endpoint), config.publish.endpoint
    assert not config.preview.publish_topic
    assert not config.publish.allow_unauthenticated


def test_frames_topic_is_off_unless_asked_for():
    assert PreviewConfig().publish_topic is False
    assert parse_config({"preview": {"enabled": True}}).preview.publish_topic is False


def test_a_network_endpoint_needs_curve_or_an_explicit_opt_out(tmp_path):
    with pytest.raises(ConfigError) as caught:
        parse_config({"publish": {"endpoint": "tcp://0.0.0.0:5555"}})
    assert caught.value.errors[0][0] == "publish.endpoint"
    assert "allow_unauthenticated" in caught.value.errors[0][1]
    for host in ("*", "192.168.1.20", "eth0"):
        with pytest.raises(ConfigError):
            parse_config({"publish": {"endpoint": f"tcp://{host}:5555"}})
    open_ = parse_config(
        {"publish": {"endpoint": "tcp://0.0.0.0:5", "allow_unauthenticated": True}}
    )
    assert not open_.publish.curve
    keys = {"curve_server_secret_key_file": str(tmp_path / "none.key_secret"),
            "allow_any_client": True}  # fmt: skip
    cfg = parse_config({"publish": {"endpoint": "tcp://0.0.0.0:5", **keys}})
    with pytest.raises(ConfigError) as caught:  # a missing key file names its field
        check_curve_keys(cfg.publish, "edged.yaml", "publish")
    assert caught.value.errors[0][0] == "publish.curve_server_secret_key_file"
    with pytest.raises(ConfigError) as caught:  # '*' is not a directory
        parse_config({"publish": {"curve_authorized_keys_dir": "*"}})
    assert caught.value.errors[0][0] == "publish.curve_authorized_keys_dir"


def test_the_subscription_tracker_keeps_a_bounded_number_of_prefixes():
    mine = SubscriptionTracker((b"detections.cam0",))
    anyone = SubscriptionTracker()
    for i in range(20_000):  # a peer subscribing to junk, forever
        mine.feed(b"\x01junk%d" % i)
        anyone.feed(b"\x01junk%d" % i)
    assert len(mine.prefixes) == 0 and mine.ignored == 20_000
    assert len(anyone.prefixes) == MAX_PREFIXES
    for event in (b"\x01detections.", b"\x01", b"\x01detections.cam0"):
        mine.feed(event)
    assert mine.matching(b"detections.cam0") == 3  # real subscribers are still counted


def test_an_oversized_subscription_drops_the_peer_and_is_never_kept(ctx):  # noqa: F811
    pub = open_publisher(ctx, PublishConfig(endpoint="tcp://127.0.0.1:0"))
    monitor = pub.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    peer = ctx.socket(zmq.XSUB)
    peer.setsockopt(zmq.LINGER, 0)
    try:
        peer.connect(pub.endpoint)
        peer.send(b"\x01" + b"d" * (MAX_SUBSCRIPTION_BYTES * 64))
        poller = zmq.Poller()
        poller.register(pub.sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        events = dict(poller.poll(30_000))
        # One of the two happens: the publisher gets the subscription, or drops the peer.
        assert pub.sock not in events, "a 64 KiB subscription reached the publisher"
        assert monitor in events
        assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
    finally:
        peer.close(0)
        monitor.close(0)
        pub.close()


def test_repeated_subscribes_cannot_make_the_tap_resend_jpegs(ring, ctx, tmp_path):  # noqa: F811
    public = ctx.socket(zmq.XPUB)
    configure_xpub(public)
    public.setsockopt(zmq.LINGER, 0)
    public.bind(f"ipc://{tmp_path}/pub.sock")
    now = [100.0]  # the tap's clock: stands still unless the test moves it
    tap = make_tap(PreviewConfig(enabled=True, publish_topic=True), ring, ctx, tmp_path, public,
                   clock=lambda: now[0])  # fmt: skip
    watcher = ctx.socket(zmq.SUB)
    watcher.setsockopt(zmq.LINGER, 0)
    watcher.setsockopt(zmq.SUBSCRIBE, b"frames.cam0")
    watcher.connect(f"ipc://{tmp_path}/pub.sock")
    storm = ctx.socket(zmq.XSUB)
    storm.setsockopt(zmq.LINGER, 0)
    storm.connect(f"ipc://{tmp_path}/pub.sock")
    try:
        assert public.poll(10_000)  # the watcher's subscription
        tap.public_event(public.recv())
        offer(tap, put_frame(ring, 5), 0.0)
        assert len(receive_all(watcher)) == 1
        cycles = 200
        for _ in range(cycles):
            storm.send(b"\x01frames.cam0")
            storm.send(b"\x00frames.cam0")
        events = 0
        while events < 2 * cycles and public.poll(10_000):
            tap.public_event(public.recv())
            tap.service()
            events += 1
        assert events == 2 * cycles
        # 200 re-subscribes within one interval of the tap's clock: one resend, however long
        # the storm took on this machine; the next is paid once the interval has passed.
        assert len(receive_all(watcher)) == 1
        now[0] += RESEND_INTERVAL_S
        tap.service()
        assert len(receive_all(watcher)) == 1
    finally:
        for sock in (storm, watcher, public):
            sock.close(0)
        tap.close()
