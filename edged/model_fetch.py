"""Install one model file from a manifest's fetch source: verified, whole, or not at all.

The bytes go to a temporary file beside the target while their sha256 is computed; only a
file whose length and hash match is renamed over the target (same directory, so the rename is
atomic). A dropped connection, a wrong file or an interrupt leaves nothing behind, so a
half-written model can never count as installed. Downloads are https only (redirects too)
unless ``insecure``; the hash is checked either way.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from edged.redact import redact_uri

# One .onnx protobuf cannot exceed 2 GiB (larger models keep their weights in external data,
# which fetch does not handle); HEFs are far smaller. Nothing larger is accepted from a server.
MAX_DOWNLOAD_BYTES = 2 << 30
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0  # per connect / read, not for the whole download


class FetchError(Exception):
    """This source could not provide the file; the message says why."""


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follow redirects to https:// only (GitHub release assets redirect to a CDN)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if not newurl.lower().startswith("https://"):
            raise FetchError(f"redirected to {redact_uri(newurl)}, which is not https://")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


Sink = Callable[[bytes], None]


def _download(url: str, sink: Sink, insecure: bool) -> None:
    handlers = [] if insecure else [_NoDowngrade()]
    opener = urllib.request.build_opener(*handlers)
    with opener.open(url, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if expected is not None and expected > MAX_DOWNLOAD_BYTES:
            raise FetchError(
                f"the server announces {expected} bytes, more than {MAX_DOWNLOAD_BYTES}"
            )
        written = 0
        while block := response.read(CHUNK_BYTES):
            written += len(block)
            if written > MAX_DOWNLOAD_BYTES:
                raise FetchError(f"more than {MAX_DOWNLOAD_BYTES} bytes; stopped")
            sink(block)
    # http.client ends the stream quietly when the connection drops before Content-Length.
    if expected is not None and written != expected:
        raise FetchError(f"connection closed after {written} of {expected} bytes")


def _copy(path: Path, sink: Sink) -> None:
    with path.open("rb") as source:
        while block := source.read(CHUNK_BYTES):
            sink(block)


def _install(target: Path, sha256: str, produce: Callable[[Sink], None]) -> None:
    """Write what ``produce`` gives to a temporary file, check the hash, rename over ``target``."""
    tmp = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed or removed below, never leaked
        dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False
    )
    digest = hashlib.sha256()

    def sink(block: bytes) -> None:
        digest.update(block)
        tmp.write(block)

    try:
        produce(sink)
        if digest.hexdigest() != sha256:
            raise FetchError(f"sha256 {digest.hexdigest()} is not the manifest's {sha256}")
        tmp.flush()
        os.fsync(tmp.fileno())  # the rename must not land before the data does
        tmp.close()
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, target)
    except BaseException:  # an interrupt too: never leave the part file behind
        tmp.close()
        Path(tmp.name).unlink(missing_ok=True)
        raise


def fetch_file(
    source: str, sha256: str, target: Path, base_dir: Path, insecure: bool = False
) -> None:
    """Install ``target`` from ``source`` (a URL, or a path relative to ``base_dir``) if its
    bytes have ``sha256``; raise :class:`FetchError` (nothing written) otherwise."""
    if is_url(source):
        if not insecure and not source.lower().startswith("https://"):
            raise FetchError("plain http:// is refused (--insecure allows it; the sha256 is "
                             "still checked)")  # fmt: skip
        try:
            _install(target, sha256, lambda sink: _download(source, sink, insecure))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise FetchError(f"download failed: {redact_uri(str(exc))}") from None
        return
    local = (base_dir / source).resolve()
    if not local.is_file():
        raise FetchError(f"{local} does not exist")
    try:
        _install(target, sha256, lambda sink: _copy(local, sink))
    except OSError as exc:
        raise FetchError(f"cannot copy {local}: {exc.strerror or exc}") from None
