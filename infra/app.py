"""Build the CDKTF App from validated environment configs."""

from __future__ import annotations

from cdktf import App

from infra.stack import PlatformStack
from toolkit.config import EnvironmentConfig


def build_app(configs: dict[str, EnvironmentConfig], outdir: str | None = None) -> App:
    app = App(outdir=outdir) if outdir else App()
    for config in configs.values():
        PlatformStack(app, config)
    return app
