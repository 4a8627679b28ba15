"""Entry point of every spawned stage process."""

from __future__ import annotations

import importlib
import logging
import os

from setproctitle import setproctitle

from edged.logs import configure_logging
from edged.pipeline.runtime import StageSetup

_MODULES = {
    "capture": "edged.pipeline.stages.capture",
    "preprocess": "edged.pipeline.stages.preprocess",
    "infer": "edged.pipeline.stages.inference",
    "postprocess": "edged.pipeline.stages.postprocess",
    "publish": "edged.pipeline.stages.publish",
}


def main(setup: StageSetup) -> None:
    configure_logging(setup.config.runtime.log_level, process_name=setup.stage)
    # `ps`/`top`/`htop` then show "edged: infer" instead of a multiprocessing command line.
    setproctitle(f"edged: {setup.stage}")
    if setup.stage != "infer" and setup.config.pipeline.stage_nice:
        # Only the stages: the supervisor stays at 0 so respawned stages start from there.
        os.nice(setup.config.pipeline.stage_nice)
    try:
        importlib.import_module(_MODULES[setup.stage]).run(setup)
    except Exception:
        logging.getLogger(f"edged.{setup.stage}").exception("%s stage crashed", setup.stage)
        raise
