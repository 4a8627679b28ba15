"""Watching the served model in production: the live shadow agreement monitor.

:mod:`.agreement` (pure: matched boxes, recall/precision/IoU/confidence shift; ``edged tune``
uses it too), :mod:`.config` (the ``monitor:`` section), :mod:`.tap` (the publish stage's side:
a frame now and then, never waiting), :mod:`.helper` (the low-priority process that runs the
reference variant), :mod:`.process` (the supervisor's side: spawn, restart, reports → metrics,
WARNING and STATUS), :mod:`.metrics`, :mod:`.messages` (what travels between them).

Light on import: the supervisor and the config import parts of it; the helper's heavy imports
(backends, OpenCV) happen inside the helper process.
"""
