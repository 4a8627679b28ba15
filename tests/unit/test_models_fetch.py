"""`edged models fetch` against real HTTP(S) servers on loopback: verified, whole, or nothing.

A server in this process serves a model-sized file whole, cut off half-way (Content-Length
promises more), with other bytes, and as a redirect to plain http; `edged models fetch` runs as
the real command in a subprocess and trusts the test's self-signed certificate through
SSL_CERT_FILE. After every refusal the model directory holds no model and no part file.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.paths import REPO_ROOT
from tests.tls import self_signed_certificate

PAYLOAD = bytes(range(256)) * 12_000  # ~3 MB: several reads, so a cut lands mid-stream
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """One loopback HTTP or HTTPS server; ``requests`` lists the paths asked for."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest's output clean
                pass

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if self.path == "/redirect-to-http":
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{outer.port}/model.onnx")
                    self.end_headers()
                    return
                body = b"x" * len(PAYLOAD) if self.path == "/other.onnx" else PAYLOAD
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path == "/truncated.onnx":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True  # the connection drops half-way
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.scheme = "https" if context else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, as on every Debian)."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture()
def https(certificate: tuple[Path, Path]) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = Server(context)
    yield server
    server.close()


@pytest.fixture()
def http() -> Iterator[Server]:
    server = Server(None)
    yield server
    server.close()


def fetch(models: Path, sources: list[dict], cert: Path | None, *flags: str):
    models.mkdir(exist_ok=True)
    manifest = {"name": "m", "variants": {"fp32": {"backend": "onnxruntime", "path": "m.onnx"}},
                "fetch": {"fp32": sources}}  # fmt: skip
    (models / "m.yaml").write_text(yaml.safe_dump(manifest))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    if cert is not None:
        env["SSL_CERT_FILE"] = str(cert)
    return subprocess.run(
        [sys.executable, "-m", "edged.cli", "models", "--models-dir", str(models), "fetch", "m",
         *flags],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def left_in(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir() if p.name != "m.yaml")


def test_a_verified_https_download_is_installed(tmp_path, https, certificate) -> None:
    done = fetch(tmp_path, [{"from": https.url("/model.onnx"), "sha256": SHA256}], certificate[0])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.onnx").read_bytes() == PAYLOAD
    assert left_in(tmp_path) == ["m.onnx"]
    again = fetch(tmp_path, [{"from": https.url("/model.onnx"), "sha256": SHA256}], certificate[0])
    assert again.returncode == 0 and "already present" in again.stdout
    assert https.requests == ["/model.onnx"]  # the second run checked the file, fetched nothing


def test_a_dropped_connection_leaves_nothing(tmp_path, https, certificate) -> None:
    """Before: the half file stayed as m.onnx and counted as installed."""
    done = fetch(tmp_path, [{"from": https.url("/truncated.onnx"), "sha256": SHA256}],
                 certificate[0])  # fmt: skip
    assert done.returncode == 1, done.stdout
    assert "connection closed after 1536000 of 3072000 bytes" in done.stderr
    assert "nothing was written" in done.stderr
    assert left_in(tmp_path) == []


def test_a_file_with_another_hash_is_refused_and_the_next_source_tried(
    tmp_path, https, certificate
) -> None:
    sources = [{"from": https.url("/other.onnx"), "sha256": SHA256},
               {"from": https.url("/model.onnx"), "sha256": SHA256}]  # fmt: skip
    only_wrong = fetch(tmp_path / "a", sources[:1], certificate[0])
    assert only_wrong.returncode == 1
    assert f"is not the manifest's {SHA256}" in only_wrong.stderr
    assert left_in(tmp_path / "a") == []
    both = fetch(tmp_path / "b", sources, certificate[0])
    assert both.returncode == 0, both.stderr
    assert (tmp_path / "b" / "m.onnx").read_bytes() == PAYLOAD


def test_plain_http_needs_insecure(tmp_path, http) -> None:
    source = [{"from": http.url("/model.onnx"), "sha256": SHA256}]
    refused = fetch(tmp_path, source, None)
    assert refused.returncode == 1 and "--insecure" in refused.stderr
    assert http.requests == [] and left_in(tmp_path) == []
    allowed = fetch(tmp_path, source, None, "--insecure")
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "m.onnx").read_bytes() == PAYLOAD
    wrong = fetch(tmp_path / "w", [{"from": http.url("/other.onnx"), "sha256": SHA256}], None,
                  "--insecure")  # fmt: skip
    assert wrong.returncode == 1 and left_in(tmp_path / "w") == []  # the hash still counts


def test_a_redirect_to_plain_http_is_refused(tmp_path, https, certificate) -> None:
    done = fetch(tmp_path, [{"from": https.url("/redirect-to-http"), "sha256": SHA256}],
                 certificate[0])  # fmt: skip
    assert done.returncode == 1 and "not https://" in done.stderr
    assert https.requests == ["/redirect-to-http"] and left_in(tmp_path) == []


def test_local_copies_are_verified_too(tmp_path) -> None:
    (tmp_path / "src.onnx").write_bytes(PAYLOAD)
    (tmp_path / "bad.onnx").write_bytes(PAYLOAD[:-1])
    bad = fetch(tmp_path / "m", [{"from": "../bad.onnx", "sha256": SHA256}], None)
    assert bad.returncode == 1 and left_in(tmp_path / "m") == []
    good = fetch(tmp_path / "m", [{"from": "../src.onnx", "sha256": SHA256}], None)
    assert good.returncode == 0 and (tmp_path / "m" / "m.onnx").read_bytes() == PAYLOAD


def test_a_present_file_with_another_hash_is_left_alone(tmp_path) -> None:
    tmp_path.joinpath("m.onnx").write_bytes(b"mine")
    (tmp_path / "src.onnx").write_bytes(PAYLOAD)
    done = fetch(tmp_path, [{"from": "src.onnx", "sha256": SHA256}], None)
    assert done.returncode == 1 and "move it away" in done.stderr
    assert (tmp_path / "m.onnx").read_bytes() == b"mine"


def test_a_source_without_sha256_is_a_manifest_error(tmp_path) -> None:
    """The old 'path | url' string form carried no hash."""
    tmp_path.joinpath("m.yaml").write_text(
        "name: m\nvariants:\n  fp32: {backend: onnxruntime, path: m.onnx}\n"
        "fetch:\n  fp32: src.onnx | https://example.invalid/m.onnx\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "edged.cli", "models", "--models-dir", str(tmp_path), "fetch", "m"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "fetch.fp32" in done.stderr and "sha256" in done.stderr


def test_the_shipped_manifest_names_the_shared_model_by_its_hash() -> None:
    from edged.models import load_manifest, sha256_of
    from tests.paths import YOLOV5N, require

    manifest = load_manifest(REPO_ROOT / "models" / "yolov5n.yaml")
    assert [s.sha256 for s in manifest.fetch["fp32"]] == [sha256_of(require(YOLOV5N))]
