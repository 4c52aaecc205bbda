"""The `toolkit` command line (toolkit.cli.app); `main` is the console script."""

from toolkit.cli.app import cli, main

__all__ = ["cli", "main"]
