"""`cdktf synth` entry point (cdktf.json runs `python -m infra`): one stack per environment file.

A bad environment file stops here with the toolkit's config error (exit 2), before any
jsii code runs.
"""

from __future__ import annotations

import sys

from toolkit.config import load_all_environments
from toolkit.errors import ConfigError


def main() -> int:
    try:
        configs = load_all_environments()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    from infra.app import build_app

    build_app(configs).synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
