"""One variant's figures: the daemon's pipeline speed (``edged bench pipeline``'s run, with the
variant's manifest options), and accuracy (mAP50-95 on labelled data, or agreement with the
reference on unlabelled images). Each result is a JSON-ready dict, cached by file hashes and
settings (:mod:`.cache`)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edged.backends.registry import backend_spec
from edged.models import ResolvedVariant
from edged.monitor.agreement import compare, figures, total
from edged.postprocess.decoders import DecodeParams, Detections
from edged.tools.tune.cache import ResultCache, cache_key

# The daemon's own postprocess defaults: agreement is judged on what it would publish.
AGREEMENT_PARAMS = DecodeParams(conf_threshold=0.25, iou_threshold=0.45)


@dataclass(frozen=True)
class TuneSettings:
    """Everything a measurement depends on besides the model files (part of the cache key)."""

    source: str  # video the daemon reads (lossless)
    threads: int | None = None  # the thread budget of every backend (None: the daemon's default)
    frames: int | None = 300  # timed frames per variant (None: the whole video)
    warmup: int = 10
    data: str | None = None  # YOLO data.yaml: mAP50-95; None: agreement on calib images
    calib: str | None = None
    max_images: int | None = None  # images for accuracy/agreement (None: all)
    timeout_s: float = 900.0


def model_files(variant: ResolvedVariant) -> tuple[Path, ...]:
    return backend_spec(variant.backend).model_files(variant.path)


def _source_identity(source: str) -> dict[str, Any]:
    """A video by path, size and mtime (hashing a long video on every run would cost more than
    the runs; a replaced file changes size or mtime)."""
    path = Path(source)
    if not path.is_file():
        return {"uri": source}
    stat = path.stat()
    return {"uri": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def measure_speed(
    variant: ResolvedVariant,
    models_dir: Path,
    settings: TuneSettings,
    cache: ResultCache,
) -> tuple[dict[str, Any], bool]:
    """The daemon's lossless pipeline run on ``variant``: (result, from cache)."""
    from edged.tools.pipeline_bench.daemon import run_edged
    from edged.tools.pipeline_bench.settings import PipelineBenchSettings

    key = cache_key(
        "speed",
        model_files(variant),
        {
            "backend": variant.backend,
            "options": list(variant.options),
            "source": _source_identity(settings.source),
            "threads": settings.threads,
            "frames": settings.frames,
            "warmup": settings.warmup,
        },
    )
    hit = cache.get(key)
    if hit is not None:
        return hit, True
    bench = PipelineBenchSettings(
        models=(),
        source=settings.source,
        threads=settings.threads,
        frames=settings.frames,
        warmup=settings.warmup,
        timeout_s=settings.timeout_s,
    )
    model = {
        "manifest": str(variant.manifest_path),
        "variant": variant.variant,
        "models_dir": str(models_dir),
        "backend": variant.backend,
        "path": str(variant.path),
    }
    with tempfile.TemporaryDirectory(prefix="edged-tune-") as work:
        result = run_edged(bench, model, "lossless", Path(work), settings.frames, None)
    if result.get("status") == "ok":  # a failure is not remembered: the next run retries
        cache.put(key, result)
    return result, False


def _model_ref(variant: ResolvedVariant) -> str:
    return f"{variant.backend}:{variant.path}"


def measure_map(
    variant: ResolvedVariant, settings: TuneSettings, cache: ResultCache
) -> tuple[dict[str, Any], bool]:
    """mAP50-95 on ``settings.data`` (``edged eval``'s protocol): (EvalResult dict, cached)."""
    from edged.tools.evaluate import EvalSettings, evaluate

    assert settings.data is not None
    eval_settings = EvalSettings(
        intra_op_threads=settings.threads,
        max_images=settings.max_images,
        backend=variant.backend,
        backend_options=variant.options,
    )
    key = cache_key(
        "map",
        model_files(variant),
        {
            "data": str(Path(settings.data).resolve()),
            "settings": asdict(eval_settings),
        },
    )
    hit = cache.get(key)
    if hit is not None:
        return hit, True
    result = evaluate(_model_ref(variant), settings.data, eval_settings, progress=False).to_dict()
    cache.put(key, result)
    return result, False


def detect_all(
    variant: ResolvedVariant, images: Sequence[Path], threads: int | None
) -> list[Detections]:
    from edged.tools.backend_choice import options_for
    from edged.tools.dataset import read_image
    from edged.tools.runner import ModelRunner

    options = options_for(variant.backend, threads, **dict(variant.options))
    runner = ModelRunner(_model_ref(variant), options, AGREEMENT_PARAMS, backend=variant.backend)
    try:
        return [runner.detect(read_image(p)) for p in images]
    finally:
        runner.close()


def measure_agreement(
    variant: ResolvedVariant,
    reference: ResolvedVariant,
    images: Sequence[Path],
    settings: TuneSettings,
    cache: ResultCache,
    reference_detections: Callable[[], list[Detections]],
) -> tuple[dict[str, Any], bool]:
    """Agreement with the reference's detections on ``images``: (summary dict, cached)."""
    key = cache_key(
        "agreement",
        [*model_files(reference), *model_files(variant)],
        {
            "backend": variant.backend,
            "options": list(variant.options),
            "reference": [reference.backend, list(reference.options)],
            "images": [str(p.resolve()) for p in images],
            "params": asdict(AGREEMENT_PARAMS),
        },
    )
    hit = cache.get(key)
    if hit is not None:
        return hit, True
    ref = reference_detections()
    mine = detect_all(variant, images, settings.threads)
    a = total(
        compare(r.boxes, r.class_ids, r.scores, m.boxes, m.class_ids, m.scores)
        for r, m in zip(ref, mine, strict=True)
    )
    result = {
        "images": len(images),
        "reference_boxes": a.reference_boxes,
        "variant_boxes": a.variant_boxes,
        "matched": a.matched,
        **figures(a),
    }
    cache.put(key, result)
    return result, False
