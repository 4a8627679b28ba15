"""`edged models list` and `edged models fetch`: which variants exist, where files come from."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edged.models import ModelError, load_manifest, sha256_of


@dataclass(frozen=True)
class VariantEntry:
    model: str
    variant: str
    backend: str
    path: Path
    present: bool
    size: int | None
    sha256: str | None


def catalog(models_dir: Path, with_hash: bool = True) -> list[VariantEntry]:
    entries = []
    for manifest_path in sorted([*models_dir.glob("*.yaml"), *models_dir.glob("*.yml")]):
        manifest = load_manifest(manifest_path)
        for name, variant in manifest.variants.items():
            raw = Path(variant.path)
            path = raw if raw.is_absolute() else manifest_path.parent / raw
            present = path.is_file()
            entries.append(VariantEntry(
                manifest.name, name, variant.backend, path, present,
                path.stat().st_size if present else None,
                sha256_of(path) if present and with_hash else None,
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
        table.add_row(
            e.model, e.variant, e.backend, str(e.path), "yes" if e.present else "no",
            f"{e.size / 1e6:.1f} MB" if e.size else "-", (e.sha256 or "-")[:16],
        )  # fmt: skip
    Console().print(table)
    return 0


def fetch(models_dir: Path, name: str, variant: str) -> int:
    """Copy (or download) a variant file from the manifest's ``fetch`` entry."""
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
    if target.is_file():
        print(f"{target} already present")
        return 0
    origin = manifest.fetch.get(variant)
    if origin is None:
        print(f"edged models fetch: no fetch source for {name}/{variant}; see models/README.md",
              file=sys.stderr)  # fmt: skip
        return 1
    candidates = [c.strip() for c in origin.split("|")]
    for candidate in candidates:
        if candidate.startswith(("http://", "https://")):
            print(f"downloading {candidate} -> {target}")
            try:
                with urllib.request.urlopen(candidate, timeout=60) as response, \
                        open(target, "wb") as out:  # fmt: skip
                    shutil.copyfileobj(response, out)
            except OSError as exc:
                print(f"  failed: {exc}", file=sys.stderr)
                target.unlink(missing_ok=True)
                continue
            return 0
        local = (manifest_path.parent / candidate).resolve()
        if local.is_file():
            print(f"copying {local} -> {target}")
            shutil.copyfile(local, target)
            return 0
    print(f"edged models fetch: none of {candidates} is available", file=sys.stderr)
    return 1
