"""`edged models list` and `edged models fetch`: which variants exist, where files come from."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edged.backends.registry import backend_spec
from edged.model_fetch import FetchError, fetch_file, is_url
from edged.models import ModelError, load_manifest, sha256_of
from edged.redact import redact_uri


@dataclass(frozen=True)
class VariantEntry:
    model: str
    variant: str
    backend: str
    path: Path
    present: bool  # the model file and every file beside it that it needs (.bin)
    size: int | None
    sha256: str | None
    runtime_installed: bool = True


def catalog(models_dir: Path, with_hash: bool = True) -> list[VariantEntry]:
    entries = []
    for manifest_path in sorted([*models_dir.glob("*.yaml"), *models_dir.glob("*.yml")]):
        manifest = load_manifest(manifest_path)
        for name, variant in manifest.variants.items():
            raw = Path(variant.path)
            path = raw if raw.is_absolute() else manifest_path.parent / raw
            spec = backend_spec(variant.backend)
            files = spec.model_files(path)
            present = all(f.is_file() for f in files)
            entries.append(VariantEntry(
                manifest.name, name, variant.backend, path, present,
                sum(f.stat().st_size for f in files) if present else None,
                sha256_of(path) if present and with_hash else None,
                spec.installed(),
            ))  # fmt: skip
    return entries


def print_catalog(models_dir: Path, with_hash: bool = True) -> int:
    if not models_dir.is_dir():  # an empty table would read as "no models yet"
        print(f"edged models: no such directory: {models_dir} (--models-dir)", file=sys.stderr)
        return 2
    try:
        entries = catalog(models_dir, with_hash)
    except ModelError as exc:
        print(f"edged models: {exc}", file=sys.stderr)
        return 1
    table = Table(title=f"models in {models_dir}")
    for column in ("model", "variant", "backend", "file", "present", "size", "sha256"):
        table.add_column(column)
    for e in entries:
        backend = e.backend if e.runtime_installed else f"{e.backend} (not installed)"
        table.add_row(
            e.model, e.variant, backend, str(e.path), "yes" if e.present else "no",
            f"{e.size / 1e6:.1f} MB" if e.size else "-", (e.sha256 or "-")[:16],
        )  # fmt: skip
    Console().print(table)
    return 0


def fetch(models_dir: Path, name: str, variant: str, insecure: bool = False) -> int:
    """Install a variant file from the manifest's ``fetch`` sources: the first that gives a file
    with its listed sha256 wins; nothing is written otherwise (see :mod:`edged.model_fetch`)."""
    manifest_path = models_dir / f"{name}.yaml"
    try:
        manifest = load_manifest(manifest_path)
    except ModelError as exc:
        print(f"edged models fetch: {exc}", file=sys.stderr)
        return 1
    if variant not in manifest.variants:
        print(f"edged models fetch: {name} has no variant {variant}", file=sys.stderr)
        return 1
    target = manifest_path.parent / manifest.variants[variant].path
    sources = manifest.fetch.get(variant)
    if not sources:
        if target.is_file():  # nothing to check it against
            print(f"{target} already present")
            return 0
        print(f"edged models fetch: no fetch source for {name}/{variant}; see models/README.md",
              file=sys.stderr)  # fmt: skip
        return 1
    known = {s.sha256 for s in sources}
    if target.is_file():
        digest = sha256_of(target)
        if digest in known:
            print(f"{target} already present (sha256 matches the manifest)")
            return 0
        print(f"edged models fetch: {target} exists but its sha256 {digest} is none the "
              "manifest lists; move it away to fetch it again", file=sys.stderr)  # fmt: skip
        return 1
    for source in sources:
        shown = redact_uri(source.source)
        print(f"{'downloading' if is_url(source.source) else 'copying'} {shown} -> {target}")
        try:
            fetch_file(source.source, source.sha256, target, manifest_path.parent, insecure)
        except FetchError as exc:
            print(f"  {shown}: {exc}", file=sys.stderr)
            continue
        print(f"  sha256 {source.sha256} verified")
        return 0
    print(f"edged models fetch: no source gave {name}/{variant}; nothing was written",
          file=sys.stderr)  # fmt: skip
    return 1
