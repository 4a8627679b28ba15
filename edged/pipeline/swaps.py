"""The supervisor's side of a hot swap: bookkeeping only, the sockets are passed in.

One swap at a time. The inference stage loads the new variant while the old one keeps serving,
then answers with ``SwapDone`` (or ``SwapFailed``), naming the last frame the old model
inferred. The client's reply waits until that frame is published, so every message it sees
after the reply names the new variant. A swap that takes longer than ``SWAP_TIMEOUT_S`` is
refused to the client; if it succeeds after all, the pipeline still follows it (the inference
stage serves it by then).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edged.config import EdgedConfig, ModelConfig
from edged.control import reply
from edged.models import ModelError, ResolvedVariant, resolve_from_config
from edged.pipeline.messages import (
    INFER,
    PREPROCESS,
    SWAP_TIMEOUT_S,
    Command,
    ModelDescriptor,
    Swap,
    SwapDone,
    SwapFailed,
    UseModel,
)
from edged.pipeline.telemetry import Telemetry

log = logging.getLogger("edged.supervisor")

MAX_TIMED_OUT_SWAPS = 4  # swaps given up on whose late result may still come
STAGE_RESTARTING = "the inference stage is restarting; retry shortly"
IDLE_REPLY_S = 2.0  # nothing published for this long: the old model's frames are all out


@dataclass
class SwapRequest:
    """A swap asked for by a client (or a config reload) and not answered yet."""

    identity: bytes | None  # the control client waiting for the reply; None: nobody
    variant: str
    started: float
    resolved: ResolvedVariant
    request_id: str  # matches the inference stage's SwapDone/SwapFailed to this request
    config: EdgedConfig | None = None  # a reloaded config, adopted when the swap succeeds
    done_at_seq: int | None = None  # reply once this seq is published (old-model frames out)
    done_at_camera: str = ""  # ... on this camera (frames are published in inference order)
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Adopted:
    """A swap that succeeded: what the supervisor's own state must follow."""

    resolved: ResolvedVariant  # what a restarted inference process loads
    model_config: ModelConfig | None  # a reload's model section, so the next reload compares


class SwapCoordinator:
    def __init__(
        self,
        telemetry: Telemetry,
        send: Callable[[str, Command], bool],
        reply_to: Callable[[bytes | None, bytes], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.telemetry = telemetry
        self._send = send
        self._reply = reply_to
        self._clock = clock
        self.pending: SwapRequest | None = None
        # Swaps given up on here, by request id: a late success still adopts a reload's config.
        self.timed_out: dict[str, SwapRequest] = {}

    @property
    def in_progress(self) -> bool:
        return self.pending is not None

    def active_variant(self) -> str | None:
        model = self.telemetry.state.model
        return None if model is None else model.variant

    def request(self, variant: str, identity: bytes | None, model_config: ModelConfig,
                config: EdgedConfig | None = None) -> None:  # fmt: skip
        """Start a swap; the reply goes out when it finished (or right away when refused)."""
        if self.pending is not None:
            self.refuse(identity, variant, "another swap is in progress")
            return
        try:
            resolved = resolve_from_config(model_config, variant)
        except ModelError as exc:
            self.refuse(identity, variant, str(exc))
            return
        request_id = uuid.uuid4().hex
        if not self._send(INFER, Swap(request_id, resolved)):
            # Nobody would ever answer it (the stage is restarting): the client hears so now
            # instead of after SWAP_TIMEOUT_S, and the next swap is not blocked meanwhile.
            self.refuse(identity, variant, STAGE_RESTARTING)
            return
        self.pending = SwapRequest(identity, variant, self._clock(), resolved, request_id, config)
        log.info("swap to %s requested (%s)", variant, resolved.path)

    def refuse(self, identity: bytes | None, variant: str, error: str) -> None:
        log.warning("swap to %s refused: %s", variant, error)
        self.telemetry.record_swap(False, None)
        self._reply(identity, reply(False, error=error, active=self.active_variant()))

    def cancel(self, reason: str) -> None:
        """The swap cannot finish (its inference process died): refuse it now."""
        pending, self.pending = self.pending, None
        if pending is not None:
            self.refuse(pending.identity, pending.variant, reason)

    def on_result(self, result: SwapDone | SwapFailed) -> Adopted | None:
        """The inference stage's answer; what to adopt when a swap succeeded."""
        pending = self.pending
        if pending is None or result.request_id != pending.request_id:
            return self._late_result(result)
        if isinstance(result, SwapFailed):
            self.pending = None
            self.refuse(pending.identity, pending.variant, result.error or "failed")
            return None
        model = result.model
        self.telemetry.record_swap(True, result.duration)
        self._follow(model)
        pending.done_at_seq = result.last_old_seq
        pending.done_at_camera = result.last_old_camera
        pending.result = {"active": model.variant, "model": model.name,
                          "first_seq": pending.done_at_seq + 1,
                          "duration_s": round(result.duration, 3)}  # fmt: skip
        log.info("swapped to %s in %.2fs", model.key, result.duration)
        return Adopted(pending.resolved, pending.config.model if pending.config else None)

    def _late_result(self, result: SwapDone | SwapFailed) -> Adopted | None:
        """A swap that had timed out here finished after all: the inference stage serves the
        new model now, so the rest of the pipeline follows it (no one is waiting for a reply)."""
        given_up = self.timed_out.pop(result.request_id, None)
        if isinstance(result, SwapFailed):
            return None
        model = result.model
        log.warning("a swap to %s that had timed out finished after all; serving it", model.key)
        self._follow(model)
        config = given_up.config if given_up is not None else None
        return Adopted(result.resolved, config.model if config is not None else None)

    def _follow(self, model: ModelDescriptor) -> None:
        """Labels, metrics and the preprocess stage move to the model inference now serves."""
        self.telemetry.set_model(model)
        self._send(PREPROCESS, UseModel(model))

    def check(self) -> None:
        """Every supervisor turn: time out a stuck swap, or reply once old frames are out."""
        pending = self.pending
        if pending is None:
            return
        now = self._clock()
        if pending.done_at_seq is None:
            if now - pending.started > SWAP_TIMEOUT_S:
                self.pending = None
                self._remember_timed_out(pending)
                self.refuse(pending.identity, pending.variant, "swap timed out")
            return
        state = self.telemetry.state
        idle = state.last_published_at is None or now - state.last_published_at > IDLE_REPLY_S
        camera = state.cameras.get(pending.done_at_camera, state)
        if camera.last_published_seq >= pending.done_at_seq or idle:
            self.pending = None
            self._reply(pending.identity, reply(True, **pending.result))

    def _remember_timed_out(self, pending: SwapRequest) -> None:
        self.timed_out[pending.request_id] = pending
        while len(self.timed_out) > MAX_TIMED_OUT_SWAPS:
            del self.timed_out[next(iter(self.timed_out))]
