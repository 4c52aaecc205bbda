"""`toolkit retrain --env ENV` for an environment that exists only as a JSON config (the loop's
end-to-end test runs the local environment under its own name and ports): the alert receiver runs
this as its retraining command. Same work as the CLI: retrain_and_release.

    python tests/retrain_with_config.py CONFIG.json PROJECT_ROOT
"""

import sys
from pathlib import Path

from toolkit.config import EnvironmentConfig
from toolkit.context import Context
from toolkit.delivery.runtime import open_runtime
from toolkit.loop.command import retrain_and_release
from toolkit.paths import ProjectPaths

if __name__ == "__main__":
    ctx = Context(EnvironmentConfig.model_validate_json(Path(sys.argv[1]).read_text()), ProjectPaths(Path(sys.argv[2])))
    record = retrain_and_release(ctx, open_runtime(ctx), dry_run=False, on_line=lambda line: print(line, flush=True))
    print(f"decision {record['decision']}, released {record['released']}, record {record['url']}", flush=True)
