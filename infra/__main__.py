"""`cdktf synth` entry point (cdktf.json runs `python -m infra`): one stack per environment file.

`python -m infra --env ENV --outdir DIR` synthesizes one environment (what `toolkit plan` runs,
in its own process so the toolkit never imports cdktf). A bad environment file stops here with
the toolkit's config error (exit 2), before any jsii code runs.
"""

from __future__ import annotations

import argparse
import sys

from toolkit.config import load_all_environments, load_environment
from toolkit.errors import ConfigError


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
