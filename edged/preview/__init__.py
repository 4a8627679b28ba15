"""Live preview: annotated JPEG frames at a reduced rate, served as MJPEG and a ZeroMQ topic.

The publish stage taps a downscaled copy of a frame (only while someone watches, at most
``preview.fps`` times a second), a background thread draws the detections and encodes the
JPEG, and the result goes out on ``frames.<camera_id>`` and on a private ipc socket that the
supervisor's HTTP server relays as ``/preview.mjpg``. Kept import-light: edged.config imports
:mod:`edged.preview.config`.
"""
