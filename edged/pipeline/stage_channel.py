"""The supervisor's end of the stages' channel: one ROUTER; each stage's DEALER identity is its
name. Events come in typed, commands go out to a stage by name."""

from __future__ import annotations

import logging
from collections.abc import Container

import zmq

from edged.pipeline.messages import Command, MessageError, StageEvent, decode_event, encode

log = logging.getLogger("edged.pipeline.supervisor")  # the supervisor's lines, as before


class StageChannel:
    def __init__(self, ctx: zmq.Context, endpoint: str, stages: Container[str]) -> None:
        self._ctx = ctx
        self._endpoint = endpoint
        self._stages = stages
        self.socket: zmq.Socket | None = None

    def bind(self) -> None:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        # A command for a stage that is not connected (restarting) fails the send: dropped
        # silently, a swap would wait for an answer that never comes.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self._endpoint)
        self.socket = sock

    def poll(self, timeout_ms: int) -> bool:
        return self.socket is not None and bool(self.socket.poll(timeout_ms))

    def receive(self) -> tuple[str, StageEvent] | None:
        """(sending stage, its event); None when nothing is waiting."""
        if self.socket is None:
            return None
        while True:
            try:
                identity, payload = self.socket.recv_multipart(zmq.NOBLOCK)
            except (zmq.Again, ValueError):  # ValueError: not an (identity, payload) pair
                return None
            stage = identity.decode(errors="replace")
            if stage not in self._stages:  # the DEALER identity is the stage name: not ours
                continue
            try:
                return stage, decode_event(payload)
            except MessageError as exc:
                log.error("%s stage: event refused: %s", stage, exc)

    def send(self, stage: str, command: Command, say_if_lost: bool = True) -> bool:
        """True when ``command`` is on its way to ``stage``: a stage that is not connected is
        refused (ROUTER_MANDATORY) instead of the command being dropped silently."""
        if self.socket is None or self.socket.closed:
            return False
        try:
            self.socket.send_multipart((stage.encode(), encode(command)), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if say_if_lost:
                log.warning("%s for the %s stage not sent: %s", type(command).__name__, stage,
                            "not connected" if exc.errno == zmq.EHOSTUNREACH else exc)  # fmt: skip
            return False
        return True

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(0)
