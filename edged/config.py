"""The daemon's configuration: pydantic models validated from YAML.

Every model forbids unknown fields so that a typo is an error naming the field, never a silently
ignored setting. :func:`load_config` turns validation failures into :class:`ConfigError` whose
message lists each problem as ``field.path: reason``.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

# Re-exported: the tools import the two historical option models from here.
from edged.backends.hailo_plugin import HailoOptions as HailoOptions
from edged.backends.onnxruntime_plugin import OnnxRuntimeOptions as OnnxRuntimeOptions
from edged.backends.registry import plugins
from edged.integrations.config import DetectorConfig, MqttConfig, mqtt_publish_errors
from edged.monitor.config import MonitorConfig
from edged.preview.config import PreviewConfig
from edged.tracking.config import TrackingConfig, pixel_bounds_errors


class ConfigError(ValueError):
    """An invalid configuration; ``errors`` holds ``(field_path, reason)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]], source: str = "config") -> None:
        self.errors = errors
        self.source = source
        lines = [f"{source}: invalid configuration ({len(errors)} error(s))"]
        lines += [f"  {path}: {reason}" for path, reason in errors]
        super().__init__("\n".join(lines))


class _Strict(BaseModel):
    # allow_inf_nan=False: `.inf` would silently turn a timeout or a rate limit off.
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False
    )


class ReconnectConfig(_Strict):
    initial_backoff_s: float = Field(0.5, gt=0, description="First wait before reopening a source.")
    max_backoff_s: float = Field(30.0, gt=0, description="Upper bound of the exponential backoff.")
    jitter: float = Field(0.2, ge=0, le=1, description="Random ± fraction added to each wait.")
    stall_timeout_s: float = Field(
        5.0, gt=0, description="A live source that delivers no frame for this long is reopened."
    )


# The network stream schemes OpenCV's FFmpeg backend opens (anything else with :// is a typo).
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "tcp://", "udp://", "rtmp://")


class SourceConfig(_Strict):
    uri: str = Field(
        "synthetic:",
        description=(
            "What to read: a video file path, rtsp:// http:// tcp:// udp:// URL, a V4L2 device "
            "(/dev/video0 or an index like 0), 'picamera2:' (or 'picamera2:1' for the 2nd "
            "camera), or 'synthetic:' for a generated test pattern."
        ),
    )
    mode: Literal["auto", "live", "realtime", "lossless"] = Field(
        "auto",
        description=(
            "live: latest frame wins, capture never blocks, skips are counted. realtime: a file "
            "paced at its fps and dropping like a camera. lossless: every frame processed once, "
            "in order (files only). auto: live for cameras/streams, realtime for files."
        ),
    )
    loop: bool = Field(False, description="Restart a file from the beginning when it ends.")
    width: int | None = Field(None, gt=0, description="Capture width (cameras, synthetic).")
    height: int | None = Field(None, gt=0, description="Requested capture height.")
    fps: float | None = Field(None, gt=0, description="Requested capture rate / pacing override.")
    decode_threads: int | None = Field(
        1,
        ge=1,
        description="FFmpeg decoder threads for files and streams; null: FFmpeg's choice (one "
        "per core). One by default: FFmpeg's frame threads hold back a frame each (latency on "
        "a live stream) and add CPU (720p H.264 here: 2.1 ms a frame with one, 2.65 ms with "
        "two) that inference would otherwise use; raise it for streams one thread cannot "
        "decode in time (4K on a Pi).",
    )
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig)

    @field_validator("uri", mode="before")
    @classmethod
    def _index_as_text(cls, uri: Any) -> Any:
        """``uri: 0`` in YAML is a camera index, as ``--source 0`` is (bools are not)."""
        return str(uri) if isinstance(uri, int) and not isinstance(uri, bool) else uri

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        scheme, sep, _ = uri.partition("://")
        if sep and f"{scheme}://" not in STREAM_SCHEMES:
            known = ", ".join(STREAM_SCHEMES)
            raise ValueError(
                f"unknown scheme {scheme + '://'!r} (streams: {known}; files: a plain path)"
            )
        return uri


class ModelConfig(_Strict):
    manifest: str | None = Field(
        None,
        description="A model manifest YAML (see models/), by path or by name inside models_dir.",
    )
    variant: str = Field("fp32", description="The manifest variant to serve at start.")
    path: str | None = Field(
        None, description="A single model file to serve (no manifest); backend from the suffix."
    )
    labels: str | None = Field(
        None, description="Class names: data.yaml or a text file; default: model metadata, COCO-80."
    )
    models_dir: str = Field(
        "models", description="The only directory models may be loaded from (relative: to cwd)."
    )
    allowed_dirs: list[str] = Field(
        default_factory=list,
        description="More directories variants may load from (e.g. /usr/share/hailo-models).",
    )
    warmup_runs: int = Field(2, ge=0, description="Blank inferences before a model serves frames.")

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if self.manifest is None and self.path is None:
            raise ValueError("set either 'manifest' or 'path'")
        if self.manifest is not None and self.path is not None:
            raise ValueError("set only one of 'manifest' and 'path'")
        return self


def _inference_config_model() -> type[BaseModel]:
    """``inference:`` has one section per registered backend, validated by its own options
    model (so a new runtime brings its settings with it; an unknown section is an error)."""
    fields: dict[str, Any] = {
        name: (spec.options, Field(default_factory=spec.options, description=spec.description))
        for name, spec in plugins().items()
    }
    return create_model("InferenceConfig", __base__=_Strict, **fields)


InferenceConfig = _inference_config_model()


def backend_options(inference: BaseModel, backend: str, overrides: dict[str, Any] | None = None):
    """The options a variant runs with: the config's ``inference.<backend>``, then the
    manifest variant's own ``options`` on top."""
    base = getattr(inference, backend)
    if not overrides:
        return base
    return type(base).model_validate({**base.model_dump(exclude_unset=True), **overrides})


class PostprocessConfig(_Strict):
    conf_threshold: float = Field(0.25, ge=0, le=1, description="Minimum detection confidence.")
    iou_threshold: float = Field(0.45, ge=0, le=1, description="NMS IoU threshold.")
    max_detections: int = Field(
        300,
        ge=1,
        le=5000,
        description="Detections kept per frame after NMS (≤ 5000: a frame's message between "
        "stages must fit one datagram).",
    )
    classes: list[int] | None = Field(None, description="Keep only these class ids.")
    agnostic_nms: bool = Field(False, description="NMS across classes instead of per class.")


class CurveServerConfig(_Strict):
    """CURVE keys of a ZeroMQ server socket (the control socket, the publisher): shared fields
    and checks; the key files themselves are checked by edged.control.curve_key_errors."""

    curve_server_secret_key_file: str | None = Field(
        None, description="Z85 secret key file of the server (required for tcp://)."
    )
    curve_authorized_keys_dir: str | None = Field(
        None,
        description=(
            "Directory of client public keys (*.key) allowed to connect over tcp://; read at "
            "start. '*' is refused: use allow_any_client."
        ),
    )
    allow_any_client: bool = Field(
        False,
        description=(
            "tcp:// only: accept any client key (encrypted, but anyone who knows the server's "
            "public key may connect) instead of curve_authorized_keys_dir."
        ),
    )

    @field_validator("curve_authorized_keys_dir")
    @classmethod
    def _no_wildcard(cls, value: str | None) -> str | None:
        # pyzmq reads the location "*" as CURVE_ALLOW_ANY: a "directory" setting that silently
        # lets every client key in must be spelled out instead.
        if value is not None and value.strip() == "*":
            raise ValueError(
                "'*' would accept any client key (pyzmq's CURVE_ALLOW_ANY); name a directory "
                "of client public keys, or set allow_any_client: true"
            )
        return value

    @model_validator(mode="after")
    def _one_client_policy(self) -> CurveServerConfig:
        if self.allow_any_client and self.curve_authorized_keys_dir:
            raise ValueError(
                "allow_any_client and curve_authorized_keys_dir exclude each other "
                "(any client key, or only those in the directory)"
            )
        if (self.curve_server_secret_key_file or self.curve_authorized_keys_dir) and not self.curve:
            raise ValueError(
                "CURVE needs both curve_server_secret_key_file and a client policy "
                "(curve_authorized_keys_dir or allow_any_client: true)"
            )
        return self

    @property
    def curve(self) -> bool:
        """Whether CURVE is configured (a server key and a client policy)."""
        return _curve_set(vars(self))


class PublishConfig(CurveServerConfig):
    # Before endpoint: its validator reads it (and the CURVE fields, inherited, come first).
    allow_unauthenticated: bool = Field(
        False,
        description="Publish on a tcp:// address beyond loopback without CURVE: anyone who can "
        "reach it may subscribe (and with preview.publish_topic, watch the camera).",
    )
    endpoint: str = Field(
        "tcp://127.0.0.1:5555",
        description="ZeroMQ PUB bind address (loopback by default). Another tcp:// address "
        "needs CURVE keys (curve_server_secret_key_file and curve_authorized_keys_dir or "
        "allow_any_client), or allow_unauthenticated: true.",
    )
    format: Literal["json", "msgpack"] = Field("json", description="Payload encoding.")
    send_hwm: int = Field(
        100, ge=1, description="Messages queued per slow subscriber before they are dropped."
    )
    wait_for_subscribers: int = Field(
        0,
        ge=0,
        description=(
            "Hold the first message until this many subscribers have joined (for lossless batch "
            "runs that must not miss the start; ZeroMQ drops messages nobody subscribed to yet)."
        ),
    )
    wait_timeout_s: float = Field(
        30.0, gt=0, description="Give up waiting for subscribers after this long."
    )

    @field_validator("endpoint")
    @classmethod
    def _zmq_endpoint(cls, value: str, info: ValidationInfo) -> str:
        value = _check_zmq_endpoint(value)
        if not is_loopback_endpoint(value) and not (
            _curve_set(info.data) or info.data.get("allow_unauthenticated")
        ):
            raise ValueError(
                f"{value} is reachable from the network: set publish.curve_server_secret_key_file"
                " with publish.curve_authorized_keys_dir (or publish.allow_any_client: true), or "
                "publish.allow_unauthenticated: true to publish to anyone"
            )
        return value


_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*\.?")


class HttpConfig(_Strict):
    enabled: bool = Field(True, description="Serve /metrics, /healthz, /readyz.")
    host: str = Field("127.0.0.1", description="Bind address (loopback unless you need remote).")
    port: int = Field(9108, ge=0, le=65535, description="TCP port (0 picks a free one).")
    ready_max_age_s: float = Field(
        5.0, gt=0, description="/readyz fails when no frame was published for this long."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (besides IP addresses and localhost) requests may name in their "
        "Host header, e.g. [pi.local] to scrape or watch by name; others get 421, which stops "
        "DNS rebinding (a web page whose name is pointed at this machine).",
    )
    max_connections: int = Field(
        1024,
        ge=1,
        le=16384,
        description="Open connections at most (being read or answered); more get 503 at once. "
        "An idle connection costs a socket and a small buffer, not a thread.",
    )
    request_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A request (head and body) must arrive whole within this long of its "
        "connection, however slowly it trickles in; else 408 and the connection is closed.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _HOST_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a host name (just the name: no scheme, port, path or "
                    "wildcard; IP addresses and localhost are always accepted)"
                )
        return names


class ControlConfig(CurveServerConfig):
    endpoint: str | None = Field(
        None,
        description=(
            "ZeroMQ REP address for `edged ctl`; default ipc://<runtime_dir>/control.sock "
            "(mode 0600). tcp:// requires CURVE keys."
        ),
    )

    @field_validator("endpoint")
    @classmethod
    def _zmq_endpoint(cls, value: str | None) -> str | None:
        return None if value is None else _check_zmq_endpoint(value)

    @model_validator(mode="after")
    def _tcp_needs_auth(self) -> ControlConfig:
        if self.endpoint and self.endpoint.startswith("tcp://") and not self.curve:
            raise ValueError(
                "a tcp:// control endpoint needs curve_server_secret_key_file and "
                "curve_authorized_keys_dir (or allow_any_client: true); unauthenticated remote "
                "control is refused"
            )
        return self


PipelineLayout = Literal["fused", "isolated"]  # the groups: edged.pipeline.layout.LAYOUTS


class PipelineConfig(_Strict):
    ring_slots: int = Field(8, ge=3, le=64, description="Shared-memory slots per ring.")
    max_frame_width: int = Field(1920, ge=16, description="Largest frame the rings accept.")
    max_frame_height: int = Field(1080, ge=16, description="Largest frame the rings accept.")
    max_output_mb: float = Field(
        32.0, gt=0, description="Largest raw model output (all outputs together) in MiB."
    )
    stats_interval_s: float = Field(0.5, gt=0, description="How often stages report counters.")
    restart_limit: int = Field(5, ge=0, description="Stage restarts allowed per restart window.")
    restart_window_s: float = Field(60.0, gt=0, description="Window for restart_limit.")
    stage_nice: int = Field(
        10,
        ge=0,
        le=19,
        description=(
            "Niceness of every stage but inference: keeps the light stages from taking the "
            "cores ONNX Runtime needs (measured +9 % pipeline FPS on 2 cores)."
        ),
    )
    exit_at_end: bool = Field(
        False, description="Stop the daemon when a non-looping file source ends."
    )
    layout: PipelineLayout = Field(
        "fused",
        description=(
            "Which stages share a process. fused: capture+preprocess | infer | "
            "postprocess+publish (two hops fewer: added latency p50 3.6 -> 2.9 ms and 65 MB "
            "less PSS, measured on 2 cores); isolated: one process per stage."
        ),
    )


class RuntimeConfig(_Strict):
    runtime_dir: str | None = Field(
        None,
        description=(
            "Sockets and pid files; default $RUNTIME_DIRECTORY (systemd), else "
            "$XDG_RUNTIME_DIR/edged, else a new private /tmp/edged-<uid>-XXXXXXXX. A directory "
            "owned by another user is refused."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")
    ready_without_frames_s: float = Field(
        60.0,
        gt=0,
        description=(
            "Under systemd: report READY this long after start even if no frame was published "
            "yet (a camera unplugged at boot), instead of letting the start time out; edged "
            "keeps retrying the source and STATUS says why nothing flows. Keep it below the "
            "unit's TimeoutStartSec (120 s)."
        ),
    )


CAMERA_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"  # a topic suffix, metric label, URL path part
MAX_CAMERAS = 16  # bounds the processes, shared memory and metric series one config can ask for


class CameraConfig(_Strict):
    """One camera of ``cameras:``: its own source, and what it may override."""

    id: str = Field(
        pattern=CAMERA_ID_PATTERN,
        description="Names the camera in topics (detections.<id>), metrics, /preview/<id>.",
    )
    source: SourceConfig = Field(default_factory=SourceConfig)
    conf_threshold: float | None = Field(
        None, ge=0, le=1, description="This camera's confidence threshold (default: postprocess's)."
    )
    fps_limit: float | None = Field(
        None, gt=0, description="Take at most this many frames a second from this camera."
    )
    tracking: TrackingConfig | None = Field(
        None, description="This camera's tracks, zones and lines (default: the top-level section)."
    )


class EdgedConfig(_Strict):
    camera_id: str = Field(
        "cam0",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Identifies this camera in topics, messages and metrics.",
    )
    source: SourceConfig = Field(default_factory=SourceConfig)
    cameras: list[CameraConfig] | None = Field(
        None,
        min_length=1,
        max_length=MAX_CAMERAS,
        description="Several cameras sharing one model (instead of source: and camera_id:).",
    )
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(manifest="yolov5n"))
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    control: ControlConfig = Field(default_factory=ControlConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    preview: PreviewConfig = Field(default_factory=PreviewConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    mqtt: MqttConfig | None = Field(None, description="Publish to MQTT / Home Assistant.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    @field_validator("cameras")
    @classmethod
    def _unique_ids(cls, cameras: list[CameraConfig] | None) -> list[CameraConfig] | None:
        seen: set[str] = set()
        for camera in cameras or ():
            if camera.id in seen:
                raise ValueError(f"camera id {camera.id!r} is used twice (ids must be unique)")
            seen.add(camera.id)
        return cameras

    @model_validator(mode="after")
    def _one_way_to_name_sources(self) -> EdgedConfig:
        # Compared with the defaults rather than "was it written": a config that went through
        # model_dump (apply_overrides) has every field written.
        if self.cameras is not None and (self.source != SourceConfig() or self.camera_id != "cam0"):
            raise ValueError(
                "cameras: replaces source: and camera_id: — give each camera its source in "
                "cameras:, or drop cameras: for a single camera"
            )
        return self

    def camera_list(self) -> list[CameraConfig]:
        """The cameras to run: ``cameras:``, or the single ``source:`` as camera ``camera_id``."""
        if self.cameras is not None:
            return list(self.cameras)
        return [CameraConfig.model_construct(id=self.camera_id, source=self.source,
                                             conf_threshold=None, fps_limit=None,
                                             tracking=None)]  # fmt: skip

    def tracking_for(self, camera: CameraConfig) -> TrackingConfig:
        """The tracking section that applies to ``camera``."""
        return camera.tracking if camera.tracking is not None else self.tracking


def _curve_set(fields: dict[str, Any]) -> bool:
    return bool(
        fields.get("curve_server_secret_key_file")
        and (fields.get("curve_authorized_keys_dir") or fields.get("allow_any_client"))
    )


def is_loopback_endpoint(endpoint: str) -> bool:
    """Whether only this host can reach ``endpoint``: ipc://, inproc://, or tcp:// on a
    loopback address or ``localhost`` (a wildcard, a LAN address or an interface name is not)."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://") :].rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_zmq_endpoint(value: str) -> str:
    if not value.startswith(("tcp://", "ipc://", "inproc://")):
        raise ValueError("must start with tcp://, ipc:// or inproc://")
    return value


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(root)"


def errors_from_validation(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field.path, reason)`` for each pydantic error, in a form a user can act on."""
    result = []
    for err in exc.errors():
        reason = err["msg"].removeprefix("Value error, ")  # pydantic's wording, not the user's
        if err["type"] == "extra_forbidden":
            reason = _unknown_field_reason(err["loc"])
        result.append((_field_path(err["loc"]), reason))
    return result


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, or inside ``X | None`` or ``list[X] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next(filter(None, (_model_in(arg) for arg in get_args(annotation))), None)


def _unknown_field_reason(loc: tuple[Any, ...]) -> str:
    """ "unknown field", with the closest known name and the names the section has."""
    section: type[BaseModel] | None = EdgedConfig
    for part in loc[:-1]:  # walk the models down to the section holding the unknown key
        if isinstance(part, int):
            continue  # an item of a list section (`cameras.0`): the list's model already
        field = section.model_fields.get(str(part)) if section else None
        section = _model_in(field.annotation if field else None)
    if section is None:
        return "unknown field"
    known = sorted(section.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field ({hint}known here: {', '.join(known)})"


def parse_config(data: Any, source: str = "config") -> EdgedConfig:
    """Validate a mapping (from YAML) into an :class:`EdgedConfig` or raise :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([("(root)", "expected a mapping of sections")], source)
    try:
        config = EdgedConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(errors_from_validation(exc), source) from None
    if errors := mqtt_publish_errors(config.mqtt, config.publish.curve_authorized_keys_dir):
        raise ConfigError(errors, source)
    if errors := _pixel_bounds_errors(config):
        raise ConfigError(errors, source)
    return config


def _pixel_bounds_errors(config: EdgedConfig) -> list[tuple[str, str]]:
    """Pixel zones/lines outside a camera's configured size (else checked on the first frame)."""
    errors = []
    for index, camera in enumerate(config.camera_list()):
        width, height = camera.source.width, camera.source.height
        if not (width and height):
            continue
        found = pixel_bounds_errors(config.tracking_for(camera), width, height)
        if config.cameras is not None:  # name the camera's section, not the top level
            prefix = f"cameras.{index}." if camera.tracking is not None else ""
            found = [(f"{prefix}{path}", f"{reason} (camera {camera.id!r})")
                     for path, reason in found]  # fmt: skip
        errors += found
    return errors


class _ConfigLoader(yaml.SafeLoader):
    """YAML with only ``true``/``false`` as booleans, and no duplicate keys.

    YAML 1.1 also reads ``on``/``off``/``yes``/``no`` as booleans, which turns a key like
    ``on:`` into ``True`` and makes its error unreadable; as values those words still work
    (pydantic accepts them for boolean fields). PyYAML keeps the last of two equal keys, so a
    second ``postprocess:`` section would silently drop the first one's settings.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults`: merged keys may be overridden, that is its point
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue  # a key pydantic refuses anyway (and maybe unhashable)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key]})",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_config(path: str | Path | None) -> EdgedConfig:
    """Read and validate a YAML config file; ``None`` gives the defaults."""
    if path is None:
        return EdgedConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("(file)", f"cannot read: {exc.strerror}")], str(p)) from None
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte {exc.start}); is this a YAML file?"
        raise ConfigError([("(file)", reason)], str(p)) from None
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass: no tags run
    except RecursionError:
        raise ConfigError([("(file)", "YAML nested too deeply")], str(p)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        reason = f"invalid YAML: {getattr(exc, 'problem', exc)}"
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None:  # where it started: an unclosed quote, say
            reason += f" ({context} from line {context_mark.line + 1})"
        raise ConfigError([(where, reason)], str(p)) from None
    return parse_config(data, str(p))


SINGLE_SOURCE_FIELDS = ("source", "camera_id")  # what `edged run --source/--camera-id` set


def camera_overrides(config: EdgedConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides of the single source (``source.uri``, ``camera_id``) aimed at a config with
    ``cameras:``: its one camera's fields, or a :class:`ConfigError` when it has several."""
    if config.cameras is None:
        return overrides
    single = [k for k in overrides if k.split(".")[0] in SINGLE_SOURCE_FIELDS]
    if not single:
        return overrides
    if len(config.cameras) > 1:
        reason = (f"set for one source, but the config has {len(config.cameras)} cameras: "
                  "change them under cameras: in the config")  # fmt: skip
        raise ConfigError([(key, reason) for key in single], "command line")
    moved = {k: v for k, v in overrides.items() if k not in single}
    for key in single:
        target = "cameras.0.id" if key == "camera_id" else f"cameras.0.{key}"
        moved[target] = overrides[key]
    return moved


def apply_overrides(config: EdgedConfig, overrides: dict[str, Any]) -> EdgedConfig:
    """Apply dotted-path overrides (``{"source.uri": "x.mp4"}``, ``cameras.0.source.uri``) and
    re-validate."""
    data = config.model_dump()
    for dotted, value in camera_overrides(config, overrides).items():
        node: Any = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[int(leaf) if isinstance(node, list) else leaf] = value
    return parse_config(data, "command line")


def default_runtime_dir() -> Path | None:
    """systemd's or the session's runtime directory; None outside both (then a daemon makes a
    private temporary one: see edged.pipeline.runtime_dir)."""
    from edged.pipeline.runtime_dir import standard_runtime_dir

    return standard_runtime_dir()
