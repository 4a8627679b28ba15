"""``edged tune``: measure every variant of a model on this device (the daemon's own pipeline
FPS, and accuracy or agreement with FP32), pick the fastest one within an accuracy budget,
report it and optionally switch the daemon to it.

One role per module: :mod:`.choice` (the pure pick), :mod:`edged.monitor.agreement` (matched
boxes; shared with the live monitor), :mod:`.cache` (resumable results), :mod:`.variants`
(which variants, making the missing ones), :mod:`.measure` (speed and accuracy of one variant),
:mod:`.apply` (config edit + hot swap), :mod:`.report` (Markdown + plot), :mod:`.command` (the
CLI).
"""
