"""Reading and writing tool results: JSON (complete) and CSV (one summary row per model)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from edged.tools.bench import RESULT_KIND as BENCH_KIND
from edged.tools.bench import BenchResult
from edged.tools.errors import ToolError
from edged.tools.evaluate import RESULT_KIND as EVAL_KIND
from edged.tools.evaluate import EvalResult


def write_json(path: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    """A JSON list of result records (``kind``/``version`` tagged)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(list(records), indent=2) + "\n")
    return p


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with p.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return p


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ToolError(f"{path}: not a readable JSON result file ({exc})") from None
    return data if isinstance(data, list) else [data]


def _json_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(path.glob("*.json")))
        elif path.is_file():
            files.append(path)
        else:
            raise ToolError(f"{path}: no such result file or folder")
    return files


def load_results(paths: Iterable[str | Path]) -> tuple[list[EvalResult], list[BenchResult]]:
    """Every eval and bench record in the given JSON files/folders (other JSON is skipped)."""
    evals: list[EvalResult] = []
    benches: list[BenchResult] = []
    for file in _json_files(paths):
        for record in _records(file):
            if not isinstance(record, dict):
                continue
            try:
                if record.get("kind") == EVAL_KIND:
                    evals.append(EvalResult.from_dict(record))
                elif record.get("kind") == BENCH_KIND:
                    benches.append(BenchResult.from_dict(record))
            except (KeyError, TypeError) as exc:
                raise ToolError(f"{file}: malformed {record.get('kind')} record ({exc})") from None
    return evals, benches
