"""waiting_requests: what a ROUTER control socket has queued, parsed, without blocking."""

from __future__ import annotations

import json

import zmq

from edged.control import ProtocolError, Request, waiting_requests


def test_requests_refusals_and_strangers(tmp_path):
    ctx = zmq.Context.instance()
    router, req, bad, dealer = (ctx.socket(t) for t in (zmq.ROUTER, zmq.REQ, zmq.REQ, zmq.DEALER))
    try:
        endpoint = f"ipc://{tmp_path / 'control.sock'}"
        router.bind(endpoint)
        for sock in (req, bad, dealer):
            sock.connect(endpoint)
        req.send(json.dumps({"version": 1, "command": "swap", "variant": "static"}).encode())
        bad.send(b"{not json")
        dealer.send(b"no envelope")  # not a REQ client: nobody to answer
        got: list = []
        for _ in range(50):
            if router.poll(100):
                got += list(waiting_requests(router))
            if len(got) == 2:
                break
        assert sorted(type(r).__name__ for _, r in got) == ["ProtocolError", "Request"]
        request = next(r for _, r in got if isinstance(r, Request))
        assert (request.command, request.variant) == ("swap", "static")
        refused = next(r for _, r in got if isinstance(r, ProtocolError))
        assert "not valid JSON" in str(refused)
        assert list(waiting_requests(router)) == []  # returns at once when nothing waits
    finally:
        for sock in (router, req, bad, dealer):
            sock.close(0)
