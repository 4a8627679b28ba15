"""Model manifests and variant resolution.

A manifest (``models/<name>.yaml``) names a model, its labels, input size and output format, and
its variants (``fp32``, ``static``, ``dynamic``, ``hailo``, ...), each a backend plus a file. The
daemon only ever loads files that resolve inside the model directory (symlinks resolved first),
except a file given explicitly with ``--model`` / ``model.path`` at start-up.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edged.backends.registry import UnknownBackend, backend_for_suffix, backend_spec, plugins
from edged.config import ModelConfig, errors_from_validation


class ModelError(ValueError):
    """A model or variant that cannot be used; the message says why."""


class VariantManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = Field(description="Backend type that runs it (see `edged doctor`).")
    path: str = Field(description="Model file, relative to the manifest (or absolute).")
    precision: str | None = Field(None, description="fp32, int8-static, int8-dynamic, int8, ...")
    description: str = Field("", description="How this variant was produced.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend options for this variant, over the config's inference.<backend>.",
    )

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        try:
            backend_spec(value)
        except UnknownBackend as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _valid_options(self) -> VariantManifest:
        try:
            backend_spec(self.backend).options.model_validate(self.options)
        except ValidationError as exc:
            details = "; ".join(f"options.{p}: {r}" for p, r in errors_from_validation(exc))
            raise ValueError(details) from None
        return self


class InputManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(640, gt=0)
    height: int = Field(640, gt=0)


class FetchSource(BaseModel):
    """One place `edged models fetch` may get a variant file from, and that file's sha256."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(
        alias="from",
        min_length=1,
        description="A path relative to the manifest, or an https:// URL (http:// needs "
        "--insecure).",
    )
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="Hash of the file this source gives (64 lowercase hex digits): only a file "
        "that matches is installed.",
    )


def _fetch_sources(value: object) -> object:
    """The old ``"path | url"`` string form carried no hash: say what to write instead."""
    if isinstance(value, str):
        raise ValueError(
            "a fetch entry is a list of {from: <path or https:// URL>, sha256: <64 hex "
            "digits>}; a source without its sha256 is refused"
        )
    return value


class ModelManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    labels: str = Field("auto", description="auto (model metadata, else COCO-80), coco80, a file.")
    input: InputManifest = Field(default_factory=InputManifest)
    output_format: Literal["auto", "yolov8", "yolov5", "hailo_nms"] = "auto"
    variants: dict[str, VariantManifest] = Field(min_length=1)
    fetch: dict[str, Annotated[list[FetchSource], BeforeValidator(_fetch_sources)]] = Field(
        default_factory=dict,
        description="Where `edged models fetch` may find variant files: variant → sources, "
        "tried in order, each with the sha256 of its file.",
    )


@dataclass(frozen=True)
class ResolvedVariant:
    """A variant ready to load: everything the inference stage needs, validated."""

    name: str
    variant: str
    backend: str
    path: Path
    precision: str | None
    labels: str  # "auto", "coco80" or a file path
    output_format: str
    manifest_path: Path | None = None
    options: tuple[tuple[str, Any], ...] = ()  # the variant's backend options (hashable)


def load_manifest(path: Path) -> ModelManifest:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ModelError(f"cannot read manifest {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ModelError(f"manifest {path} is not valid YAML: {exc}") from None
    try:
        return ModelManifest.model_validate(data)
    except ValidationError as exc:
        details = "; ".join(f"{p}: {r}" for p, r in errors_from_validation(exc))
        raise ModelError(f"manifest {path}: {details}") from None


def find_manifest(reference: str, models_dir: Path) -> Path:
    """A manifest by path, or by name (``yolov5n`` → ``<models_dir>/yolov5n.yaml``)."""
    candidate = Path(reference)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    for suffix in (".yaml", ".yml"):
        named = models_dir / f"{reference}{suffix}"
        if named.is_file():
            return named
    raise ModelError(f"model manifest {reference!r} not found (looked in {models_dir})")


def ensure_inside(path: Path, root: Path) -> Path:
    """``path`` with symlinks resolved, if it lies inside ``root``; else :class:`ModelError`."""
    try:
        resolved = path.resolve()
        root_resolved = root.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loop, NUL byte, ...
        raise ModelError(f"{path}: cannot be resolved ({exc})") from None
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise ModelError(
            f"{path} resolves to {resolved}, outside the model directory {root_resolved}; "
            "only models inside it may be loaded"
        )
    return resolved


def _inside_any(path: Path, roots: tuple[Path, ...]) -> Path:
    for root in roots[1:]:
        try:
            return ensure_inside(path, root)
        except ModelError:
            continue
    return ensure_inside(path, roots[0])  # raises naming the model directory


def resolve_variant(
    manifest_path: Path, variant: str, models_dir: Path, allowed_roots: tuple[Path, ...] = ()
) -> ResolvedVariant:
    """Resolve ``variant`` of a manifest to a file inside the model directory."""
    manifest = load_manifest(manifest_path)
    if variant not in manifest.variants:
        known = ", ".join(manifest.variants)
        raise ModelError(f"model {manifest.name!r} has no variant {variant!r} (has: {known})")
    spec = manifest.variants[variant]
    raw = Path(spec.path)
    path = raw if raw.is_absolute() else manifest_path.parent / raw
    resolved = _inside_any(path, (models_dir, *allowed_roots))
    if not resolved.is_file():
        raise ModelError(f"variant {variant!r} file {resolved} does not exist")
    for companion in backend_spec(spec.backend).companions(resolved):
        if not _inside_any(companion, (models_dir, *allowed_roots)).is_file():
            raise ModelError(
                f"variant {variant!r}: {resolved.name} needs {companion.name} beside it, "
                "which does not exist"
            )
    labels = manifest.labels
    if labels not in ("auto", "coco80"):
        # A labels file is read and published: confined like the model files.
        labels = str(_inside_any(manifest_path.parent / labels, (models_dir, *allowed_roots)))
    return ResolvedVariant(
        manifest.name, variant, spec.backend, resolved, spec.precision, labels,
        manifest.output_format, manifest_path, tuple(sorted(spec.options.items())),
    )  # fmt: skip


def resolve_single_file(path: Path, labels: str | None) -> ResolvedVariant:
    """A model given directly by path (``--model``): the user named it, so no directory check."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    backend = backend_for_suffix(path)
    if backend is None:
        suffixes = sorted({s for spec in plugins().values() for s in spec.default_for})
        raise ModelError(f"{path}: unknown model type (expected {', '.join(suffixes)})")
    return ResolvedVariant(
        path.stem, "default", backend, path.resolve(), None, labels or "auto", "auto"
    )


def resolve_from_config(model: ModelConfig, variant: str | None = None) -> ResolvedVariant:
    """The variant a config asks for (``variant`` overrides the configured one)."""
    models_dir = Path(model.models_dir)
    if model.path is not None:
        if variant not in (None, "default"):
            raise ModelError("swapping variants needs a model manifest (model.manifest)")
        return resolve_single_file(Path(model.path), model.labels)
    assert model.manifest is not None
    manifest_path = find_manifest(model.manifest, models_dir)
    extra_roots = tuple(Path(p) for p in model.allowed_dirs)
    resolved = resolve_variant(manifest_path, variant or model.variant, models_dir, extra_roots)
    if model.labels:
        resolved = ResolvedVariant(**{**resolved.__dict__, "labels": model.labels})
    return resolved


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
