"""Hide the ``user:password@`` part of URIs before they are shown or logged.

A source like ``rtsp://admin:secret@camera/stream`` would otherwise reach ``/readyz`` (no
authentication), the systemd STATUS line (readable by every local user) and the journal.
"""

from __future__ import annotations

import re

# scheme://userinfo@ — userinfo runs to the last "@" before the authority ends (/ ? # or a
# space), so a password holding a raw "@" is hidden whole.
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s'\"]*@")
REDACTED = "***@"


def redact_uri(text: str) -> str:
    """``text`` with every URI's credentials replaced by ``***`` (the rest left as it was)."""
    return _USERINFO.sub(lambda m: m.group(1) + REDACTED, text)
