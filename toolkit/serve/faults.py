"""A test-only fault switch: failures and latency injected into /v1/predict, to see alerts fire.

`toolkit serve --fault-file PATH` (a hidden option, refused unless the server binds a loopback
address, and never set by the Deployment or the serving image) reads PATH, a JSON object like
{"error_ratio": 0.5, "latency_ms": 300}, whenever it changes; a missing file means no faults.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from toolkit.errors import BadInputError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class InjectedFault(RuntimeError):
    pass


class FaultSwitch:
    def __init__(self, path: Path, host: str) -> None:
        if host not in LOOPBACK:
            raise BadInputError(f"--fault-file is for tests on this machine only; the server binds {host}, not a loopback address.")
        self.path = path
        self._checked, self._mtime = 0.0, None
        self.error_ratio, self.latency = 0.0, 0.0

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < 0.2:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self.error_ratio, self.latency, self._mtime = 0.0, 0.0, None
            return
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                faults = json.loads(self.path.read_text() or "{}")
            except ValueError:
                return  # half-written: keep the previous faults until the next check
            self.error_ratio = float(faults.get("error_ratio", 0.0))
            self.latency = float(faults.get("latency_ms", 0.0)) / 1000

    async def apply(self) -> None:
        """Sleep the injected latency, then fail the request with the injected probability."""
        self._refresh()
        if self.latency:
            import asyncio

            await asyncio.sleep(self.latency)
        if self.error_ratio and random.random() < self.error_ratio:
            raise InjectedFault("injected fault (toolkit serve --fault-file)")
