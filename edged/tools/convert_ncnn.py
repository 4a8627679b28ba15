"""``edged convert ncnn``: an ONNX detector to NCNN (``.param`` + ``.bin``) through pnnx.

pnnx (Tencent's converter, ``pip install 'edged[ncnn-convert]'``, it needs torch) reads the
ONNX model and writes NCNN's files; edged moves them to the output and writes a sidecar
``<out>.param.json`` holding what NCNN's files cannot: the ONNX metadata (class names, stride)
and the input size, which the NCNN backend reads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import onnx

from edged.backends.graph_edit import data_inputs
from edged.tools.errors import ToolError
from edged.tools.provenance import environment, sha256_file, sidecar_path

CONVERT_TIMEOUT_S = 900


@dataclass(frozen=True)
class ConvertResult:
    param_path: Path
    bin_path: Path
    sidecar_path: Path
    duration_s: float


def pnnx_command() -> str:
    """The pnnx executable: beside this Python (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).with_name("pnnx")
    found = str(beside) if beside.is_file() else shutil.which("pnnx")
    if found is None:
        raise ToolError("pnnx is not installed: pip install 'edged[ncnn-convert]' (needs torch)")
    return found


def _input_size(model: onnx.ModelProto) -> tuple[int, int]:
    inputs = data_inputs(model.graph)
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
    if len(dims) != 4 or dims[:2] != [1, 3] or min(dims[2:]) <= 0:
        raise ToolError(f"expected one static 1×3×H×W image input, found {dims or len(inputs)}")
    return dims[3], dims[2]


def convert_ncnn(model_path: str | Path, output_path: str | Path) -> ConvertResult:
    """Convert ``model_path`` (ONNX, static input) to ``output_path`` (``.param``) + ``.bin``."""
    source, output = Path(model_path), Path(output_path)
    if not source.is_file():
        raise ToolError(f"{source}: no such model file")
    if output.suffix.lower() != ".param":
        raise ToolError(f"{output}: NCNN's graph file is named .param")
    try:
        model = onnx.load(str(source), load_external_data=False)
    except Exception as exc:
        raise ToolError(f"{source}: not a readable ONNX model ({type(exc).__name__})") from None
    width, height = _input_size(model)
    metadata = {p.key: p.value for p in model.metadata_props}
    del model
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edged-pnnx-") as folder:
        work = Path(folder) / "model.onnx"
        shutil.copyfile(source, work)
        command = [pnnx_command(), str(work), f"inputshape=[1,3,{height},{width}]"]
        try:
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True,
                                  errors="replace", timeout=CONVERT_TIMEOUT_S)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise ToolError(f"pnnx did not finish in {CONVERT_TIMEOUT_S} s") from None
        param, weights = Path(folder) / "model.ncnn.param", Path(folder) / "model.ncnn.bin"
        if done.returncode != 0 or not param.is_file() or not weights.is_file():
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise ToolError(
                f"pnnx could not convert {source.name} (exit {done.returncode}):\n{tail}"
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(param, output)
        shutil.move(weights, output.with_suffix(".bin"))
    record = {
        "kind": "edged.convert",
        "version": 1,
        "format": "ncnn",
        "output": output.name,
        "output_sha256": sha256_file(output),
        "weights_sha256": sha256_file(output.with_suffix(".bin")),
        "source": {"path": str(source), "sha256": sha256_file(source)},
        "metadata": metadata,
        "input_width": width,
        "input_height": height,
        "environment": environment(),
    }
    sidecar = sidecar_path(output)
    sidecar.write_text(json.dumps(record, indent=2) + "\n")
    return ConvertResult(output, output.with_suffix(".bin"), sidecar,
                         round(time.perf_counter() - started, 1))  # fmt: skip
