"""A sweep's results in the environment's artifact store (sweeps/<env>/<sweep id>/<index>.json):
what its Indexed Job's pods write, and what `toolkit sweep --remote` reads back (the same
interface as toolkit.ml.sweep_runner.DirectoryResults)."""

from __future__ import annotations

import json


class StoreResults:
    """<url><index>.json under sweeps/<env>/<sweep id>/."""

    def __init__(self, config, url: str) -> None:
        self.config, self.url = config, url if url.endswith("/") else url + "/"

    def done(self) -> dict[int, dict]:
        from toolkit.store.s3 import read_objects

        results = {}
        for body in read_objects(self.config, self.url):
            result = json.loads(body)
            if isinstance(result, dict) and isinstance(result.get("index"), int):
                results[result["index"]] = result
        return results

    def has(self, index: int) -> bool:
        from toolkit.store.s3 import get_json

        return get_json(self.config, f"{self.url}{index}.json") is not None

    def put(self, index: int, result: dict) -> None:
        from toolkit.store.s3 import put_json

        put_json(self.config, f"{self.url}{index}.json", result)
