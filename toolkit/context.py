"""The one thing every command passes down: an environment's validated config and the project's paths.

Functions that act on an environment take a `Context` instead of `(root, config)` pairs in
varying order; a test that needs a variant (another port, another name) builds one with
`ctx.with_config(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from toolkit.config import EnvironmentConfig, load_environment
from toolkit.paths import ProjectPaths


@dataclass(frozen=True)
class Context:
    config: EnvironmentConfig
    paths: ProjectPaths

    @classmethod
    def load(cls, env: str, root: Path | None = None) -> Context:
        """Validate `environments/<env>.yaml` of the project at `root` (default: discovered)."""
        paths = ProjectPaths(root) if root is not None else ProjectPaths.discover()
        return cls(load_environment(env, paths.root), paths)

    @property
    def env(self) -> str:
        return self.config.name

    @property
    def root(self) -> Path:
        return self.paths.root

    @property
    def emulated(self) -> bool:
        """The environment's AWS is an emulator on this machine (the local environment)."""
        return self.config.aws.endpoint_url is not None

    def with_config(self, config: EnvironmentConfig) -> Context:
        return replace(self, config=config)
