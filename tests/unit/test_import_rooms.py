"""Each wing imports only what it owns: checked on a fresh interpreter's ``sys.modules``.

The supervisor and ``edged config check`` decide a source's kind without OpenCV; the daemon
never imports the offline tools; the message schema and the preview library (which subscribers
and the HTTP server import) never pull in the pipeline's internals.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _tools(modules: set[str]) -> set[str]:
    return {m for m in modules if m == "edged.tools" or m.startswith("edged.tools.")}


def test_the_supervisor_decides_a_file_source_without_opencv() -> None:
    modules = _modules_after(
        "from edged.config import parse_config\n"
        "from edged.pipeline.supervisor import pipeline_mode\n"
        "from edged.sources import source_kind\n"
        "assert pipeline_mode(parse_config({'source': {'uri': 'street.mp4'}}))[1] == 'realtime'\n"
        "assert source_kind('/dev/video0') == 'v4l2'\n"
    )
    assert "cv2" not in modules
    assert not _tools(modules)


def test_config_check_imports_no_opencv(tmp_path: Path) -> None:
    config = tmp_path / "edged.yaml"
    config.write_text(yaml.safe_dump({"source": {"uri": str(tmp_path / "street.mp4")}}))
    modules = _modules_after(
        "from edged.cli import main\n"
        f"assert main(['config', 'check', '--no-model', {str(config)!r}]) == 0\n"
    )
    assert "cv2" not in modules


def test_the_load_time_head_cut_needs_no_offline_tool() -> None:
    modules = _modules_after("import edged.backends.head_cut")
    assert "edged.backends.head_find" in modules
    assert not _tools(modules)


def test_schema_and_preview_libraries_stand_apart_from_the_pipeline() -> None:
    modules = _modules_after(
        "import edged.publish.schema, edged.publish.subscriber\n"
        "import edged.preview.annotate, edged.preview.encoder, edged.preview.routes\n"
    )
    # stage_names is the one leaf they share (the preview's latency table lists the stages).
    pipeline = {m for m in modules if m.startswith("edged.pipeline.")}
    assert pipeline <= {"edged.pipeline.stage_names"}


def test_the_inference_stage_does_not_import_its_sibling_preprocess_stage() -> None:
    modules = _modules_after("import edged.pipeline.stages.inference")
    assert "edged.pipeline.stages.preprocess" not in modules
