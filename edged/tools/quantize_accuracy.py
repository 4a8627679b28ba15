"""NNCF accuracy control for ``edged quantize openvino --data --max-drop``.

NNCF quantizes as the plain path does (same calibration, preset, float head), then measures the
FP32 and INT8 models with edged's mAP50-95 on the labelled images and, while the drop exceeds
``max_drop``, reverts the quantized operations that cost the most back to float. Units: edged
reports mAP50-95 as a fraction (``edged eval`` prints 0.340); ``--max-drop`` is in points (1.0 =
0.01 of the fraction), so NNCF gets ``max_drop_points / 100`` as an absolute drop on the
metric's own scale (``DropType.ABSOLUTE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.backends.openvino_plugin import OpenVinoOptions
from edged.tools.dataset import load_dataset
from edged.tools.evaluate import EvalSettings, require_labels
from edged.tools.map_validation import MapValidation
from edged.tools.nncf_report import nncf_log, parse
from edged.tools.runner import ModelRunner

DEFAULT_MAX_DROP_POINTS = 1.0  # issue 17's bound for OpenVINO INT8 against FP32
METRIC = "mAP50-95 (fraction, as edged eval prints it)"


@dataclass(frozen=True)
class AccuracyControl:
    """Keep edged's mAP50-95 on ``data`` within ``max_drop_points`` of the FP32 model's."""

    data: str | Path
    max_drop_points: float = DEFAULT_MAX_DROP_POINTS
    max_images: int | None = None  # the first N images of the split (as edged eval's)
    split: str = "val"
    # Images NNCF ranks layers on (those INT8 hurts most); each of ~60 candidate layers costs
    # a compile and a pass over them. None: NNCF's default, all of them up to subset_size.
    ranking_images: int | None = None

    @property
    def nncf_max_drop(self) -> float:
        return self.max_drop_points / 100


def _points(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 3)


def quantize_with_accuracy_control(
    model: Any,
    source: Path,
    calibration: Any,
    control: AccuracyControl,
    progress: bool,
    **quantize_options: Any,
) -> tuple[Any, dict[str, Any], list[str]]:
    """The quantized ``ov.Model``, the sidecar's ``accuracy_control`` record, and warnings.

    ``quantize_options`` are what the plain path gives ``nncf.quantize`` (preset, device,
    subset size, ignored scope).
    """
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    dataset = load_dataset(control.data, control.split)
    images = list(dataset.images[: control.max_images])
    require_labels(images, dataset.root)
    settings = EvalSettings()
    # The FP32 source as edged's OpenVINO backend loads it, with the float NCHW input NNCF's
    # models keep: its letterbox and decode/NMS frame every model NNCF validates.
    options = OpenVinoOptions(uint8_input=False, model_cache=False, requests=1)
    runner = ModelRunner(
        source, options, settings.decode_params(), len(dataset.names), backend="openvino"
    )
    validate = MapValidation(runner, dataset, images, settings.max_detections, progress)
    try:
        with nncf_log() as messages:
            quantized = nncf.quantize_with_accuracy_control(
                model,
                calibration,
                nncf.Dataset(images),
                validate,
                max_drop=control.nncf_max_drop,
                drop_type=nncf.DropType.ABSOLUTE,
                # One ranking worker: each holds a compiled model (memory), and the validation
                # function's runner is not thread-safe.
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                    num_ranking_workers=1, ranking_subset_size=control.ranking_images
                ),
                **quantize_options,
            )
        # The returned model's own score, compiled as NNCF compiles its candidates (f32).
        compiled = ov.compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        final, _ = validate(compiled, images)
        del compiled
    finally:
        runner.close()
    report = parse(messages)
    reference = report.metrics.get("initial")
    drop = None if reference is None else reference - final
    record = {
        "metric": METRIC,
        "data": str(control.data),
        "split": control.split,
        "images": len(images),
        "ranking_images": control.ranking_images,
        "max_drop_points": control.max_drop_points,
        "nncf_max_drop": control.nncf_max_drop,
        "drop_type": "ABSOLUTE",
        # NNCF compiles every candidate with f32 inference: the daemon gets these figures with
        # execution_mode: accuracy (performance runs reverted layers in bf16/f16 where it can).
        "inference_precision": "f32",
        "reference_metric": reference,
        "quantized_metric": report.metrics.get("quantized"),
        "tuned_metric": report.metrics.get("tuned"),
        "final_metric": final,
        "final_drop_points": _points(drop),
        "quantized_operations": report.quantized_operations,
        "reverted_to_float": report.reverted,
        "reverted_all": report.reverted_all,
    }
    warnings = []
    if reference is None or report.metrics.get("quantized") is None:
        warnings.append("NNCF's log gave no reference/quantized metric (changed NNCF messages?)")
    if not report.reached or (drop is not None and drop > control.nncf_max_drop + 1e-9):
        warnings.append(f"NNCF could not keep mAP50-95 within {control.max_drop_points} points: "
                        f"{_points(final)} against FP32 {_points(reference)}")  # fmt: skip
    return quantized, record, warnings
