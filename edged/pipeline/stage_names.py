"""The pipeline's stages in frame order: the one list of their names.

A name is also the stage's metric label and its socket identity towards the supervisor. No
imports here, so metrics and the preview can use the names without the pipeline's modules.
"""

from __future__ import annotations

CAPTURE, PREPROCESS, INFER, POSTPROCESS, PUBLISH = (
    "capture",
    "preprocess",
    "infer",
    "postprocess",
    "publish",
)
STAGE_ORDER: tuple[str, ...] = (CAPTURE, PREPROCESS, INFER, POSTPROCESS, PUBLISH)
