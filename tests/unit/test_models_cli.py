"""`edged models list`: the catalog of a model directory, and a directory that is not there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.paths import REPO_ROOT


def models_list(models_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edged.cli", "models", "--models-dir",
                           str(models_dir), "list", "--no-hash"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})  # fmt: skip


def test_a_directory_that_does_not_exist_is_an_error_not_an_empty_table(tmp_path: Path) -> None:
    done = models_list(tmp_path / "nope")
    assert done.returncode == 2
    assert done.stderr.strip() == f"edged models: no such directory: {tmp_path / 'nope'} " \
                                  "(--models-dir)"  # fmt: skip


def test_the_catalog_says_which_variant_files_are_present(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "name: m\nvariants:\n  fp32: {backend: onnxruntime, path: m.onnx}\n"
        "  static: {backend: onnxruntime, path: m-int8.onnx}\n"
    )
    (tmp_path / "m.onnx").write_bytes(b"x" * 1000)
    done = models_list(tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[2].strip(): line for line in done.stdout.splitlines()
            if line.count("│") > 3 and " m " in line}  # fmt: skip
    assert " yes " in rows["fp32"] and " no " in rows["static"], done.stdout
