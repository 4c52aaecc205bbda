"""`cdktf synth` entry point (cdktf.json runs `python -m infra`): one stack per environment file.

`python -m infra --env ENV --outdir DIR` synthesizes one environment (what `toolkit plan` runs,
in its own process so the toolkit never imports cdktf). A bad environment file stops here with
the toolkit's config error (exit 2), before any jsii code runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from toolkit.config import load_all_environments, load_environment
from toolkit.errors import ConfigError
from toolkit.paths import SYNTH_SOURCES, stack_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra", description="Synthesize the platform stacks.")
    parser.add_argument("--env", action="append", help="only this environment (repeatable; default: all)")
    parser.add_argument("--outdir", help="output directory (default: cdktf's, cdktf.out)")
    args = parser.parse_args(argv)
    try:
        configs = {env: load_environment(env) for env in args.env} if args.env else load_all_environments()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    from infra.app import build_app

    build_app(configs, outdir=args.outdir).synth()
    record_toolkit_sources([Path(args.outdir or "cdktf.out") / "stacks" / stack_name(env) for env in configs])
    return 0


def record_toolkit_sources(stack_dirs: list[Path]) -> None:
    """Write into each stack directory which toolkit files this synthesis read: the modules it
    loaded (by now, lazy imports included) and the package's data files. A toolkit module that is
    not listed cannot have shaped the stack; one that starts importing another changes itself."""
    import toolkit

    package = Path(toolkit.__file__).resolve().parent
    loaded = {Path(module.__file__).resolve() for name, module in list(sys.modules.items())
              if (name == "toolkit" or name.startswith("toolkit.")) and getattr(module, "__file__", None)}
    data = {path.resolve() for path in package.rglob("*") if path.suffix in (".json", ".yaml", ".yml") and "__pycache__" not in path.parts}
    text = json.dumps(sorted(str(path) for path in loaded | data), indent=0)
    for directory in stack_dirs:
        if directory.is_dir():
            (directory / SYNTH_SOURCES).write_text(text)


if __name__ == "__main__":
    sys.exit(main())
