"""How library code reports progress: it takes an `on_line` callable and never prints by itself,
so the CLI decides (stderr for people, nothing under --json) and tests stay quiet."""

from __future__ import annotations

from typing import Callable

Lines = Callable[[str], None]


def silent(line: str) -> None:
    """The default `on_line`: say nothing."""
