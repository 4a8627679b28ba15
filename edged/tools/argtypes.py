"""argparse types shared by the tool commands: numbers checked against a range, so a bad value
is refused at parse time with the option's name."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def ranged(kind: type, low: float | None = None, high: float | None = None) -> Callable:
    """An argparse type: ``kind`` within [low, high]; argparse names the option on failure."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"in [{low}, {high}]" if high is not None else f"≥ {low}"
            raise argparse.ArgumentTypeError(f"{text} is out of range (must be {bounds})")
        return value

    parse.__name__ = kind.__name__  # argparse's own messages name the type
    return parse


def add_number(
    p: argparse.ArgumentParser,
    flag: str,
    kind: type,
    default: float,
    summary: str,
    low: float | None = None,
    high: float | None = None,
) -> None:
    """A numeric option whose help ends with its default, as most of them here do."""
    p.add_argument(
        flag,
        type=ranged(kind, low, high),
        default=default,
        help=f"{summary} (default %(default)s)",
    )
