"""The feedback loop, driven once on the local environment (`toolkit loop-drill`, `make demo-loop`):

  1. the champion serves (the local runtime's container) and the local monitoring runs;
  2. drifted traffic: patients of 60 and older only, from the rows the champion trained on (never
     its test split), each prediction followed by its true label on POST /v1/feedback, until the
     server has shipped the labels to the artifact store;
  3. the server's PSI of a feature rises above `feedback.max_psi` (read from Prometheus);
  4. InputDriftDetected fires in Prometheus;
  5. Alertmanager notifies the alert receiver's `retrain` route;
  6. the receiver starts `toolkit retrain` (runs.jsonl), which
  7. trains a challenger on the base data plus the feedback, gates it, writes the decision record;
  8. and, when the gate passed, the released challenger serves.
Every step is timed from the start of the traffic; a step that does not happen in time fails the drill
with what was seen and where the logs are.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Callable

from toolkit.context import Context
from toolkit.errors import ToolkitError
from toolkit.feedback_tokens import local_token
from toolkit.local.monitoring import notifications_file
from toolkit.monitoring.query import PrometheusClient
from toolkit.monitoring.receiver import read_notifications
from toolkit.monitoring.retrain_trigger import read_runs
from toolkit.paths import ProjectPaths, read_json
from toolkit.workloads.local_runtime import service_url
from toolkit.workloads.runtime import Runtime
from toolkit.workloads.smoke import http_json

DRIFT_ALERT = "InputDriftDetected"
OLDER = 60  # years: the drifted population


@dataclass
class Step:
    name: str
    seconds: float  # since the traffic started
    detail: str


def drifted_records(ctx: Context) -> tuple[list[dict], list[str]]:
    """Rows of patients aged OLDER or more from the training split of the environment's dataset (the
    split the champion trained on), with their true labels; features only, as a client sends them."""
    from toolkit.ml.data import stratified_split
    from toolkit.ml.train import DatasetChoice

    settings = ctx.config.training
    dataset = DatasetChoice.from_config(settings, root=ctx.root).load()
    train, _, _ = stratified_split(dataset.y, settings.validation_fraction, settings.test_fraction, settings.seed)
    age = dataset.table.column("age")
    rows = [int(i) for i in train if (age.value(int(i)) or 0) >= OLDER]
    if not rows:
        raise ToolkitError(f"the training split of {settings.dataset} has no patients aged {OLDER} or more to drift towards.")
    records = [{k: v for k, v in record.items() if k in dataset.features} for record in dataset.table.records(rows)]
    return records, [dataset.classes[dataset.y[i]] for i in rows]


def send_labelled(url: str, records: list[dict], labels: list[str], count: int, token: str, batch: int = 50) -> int:
    """`count` predictions cycling through `records`, each followed by its label from the labeller of
    `token`; returns how many were labelled."""
    labelled = 0
    for start in range(0, count, batch):
        indices = [(start + k) % len(records) for k in range(min(batch, count - start))]
        answer = http_json(f"{url}/v1/predict", {"records": [records[i] for i in indices]}, timeout=30)
        feedback = [{"prediction_id": p["prediction_id"], "label": labels[i]} for p, i in zip(answer["predictions"], indices, strict=True)]
        labelled += http_json(f"{url}/v1/feedback", {"feedback": feedback}, timeout=30, token=token)["accepted"]
    return labelled


def shipped(url: str, kind: str) -> float:
    """Records of `kind` (predictions, feedback) the server has shipped to the artifact store."""
    import urllib.request

    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    prefix = f'toolkit_prediction_log_records_total{{kind="{kind}",outcome="shipped"}} '
    return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


def wait_shipped(url: str, before: float, count: int, timeout: float = 60.0) -> None:
    """Until the server has shipped `count` more feedback records than `before` (what a retraining reads)."""
    deadline = time.monotonic() + timeout
    while shipped(url, "feedback") < before + count:
        if time.monotonic() > deadline:
            raise ToolkitError(f"the server did not ship {count} feedback records to the artifact store within {timeout:.0f} s; "
                               "see toolkit_prediction_log_* in its /metrics.")
        time.sleep(0.2)


def run_drill(ctx: Context, runtime: Runtime, on_step: Callable[[Step], None], timeout: float = 600.0,
              monitoring: ProjectPaths | None = None) -> list[Step]:
    """`monitoring`: where the local monitoring keeps its state (default: the project's .local)."""
    config, local = ctx.config, ctx.config.monitoring.local
    monitoring = monitoring or ctx.paths
    url = service_url(config)
    prometheus = PrometheusClient(f"http://127.0.0.1:{local.prometheus_port}")
    runs = monitoring.state_subdir("retrain") / "runs.jsonl"
    champion = http_json(f"{url}/v1/model")["model_version"]
    steps: list[Step] = []
    started = time.time()

    def step(name: str, detail: str) -> None:
        steps.append(Step(name, round(time.time() - started, 1), detail))
        on_step(steps[-1])

    def until(what: str, check, limit: float = timeout):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.2)
        raise ToolkitError(f"the loop drill waited {limit:.0f} s for {what} in vain; see `toolkit monitor --env {ctx.env}`, "
                           f"{notifications_file(monitoring)} and {runs}.")

    step("serving", f"champion {champion} on {url}")
    records, labels = drifted_records(ctx)
    count = max(config.feedback.drift_window, config.feedback.min_labelled) + config.feedback.drift_window // 2
    before = shipped(url, "feedback")
    labelled = send_labelled(url, records, labels, count, local_token(ctx))
    wait_shipped(url, before, labelled)
    step("traffic", f"{count} predictions of patients aged {OLDER}+ ({len(records)} distinct rows), {labelled} labelled")

    def psi():
        result = prometheus.query(f'max by (feature) (toolkit_feature_psi{{job="serving"}}) > {config.feedback.max_psi}')
        return max(((r["metric"]["feature"], float(r["value"][1])) for r in result), key=lambda fv: fv[1], default=None)

    feature, value = until(f"a feature's PSI above {config.feedback.max_psi}", psi, 60)
    step("drift", f"PSI of {feature} is {value:.2f} (> {config.feedback.max_psi})")
    alert = until(f"{DRIFT_ALERT} to fire", lambda: [a for a in prometheus.firing_alerts()
                                                    if a["labels"].get("alertname") == DRIFT_ALERT], 60)
    step("alert", f"{DRIFT_ALERT} firing for {', '.join(sorted(a['labels'].get('feature', '?') for a in alert))}")
    until("the retrain notification", lambda: [n for n in read_notifications(notifications_file(monitoring))
                                               if n["receiver"] == "retrain" and n["received_at"] >= started and n["status"] == "firing"], 60)
    step("notified", "Alertmanager → alert receiver, route retrain")
    run = until("the receiver to start a retraining", lambda: [r for r in read_runs(runs) if r["event"] == "started" and r["time"] >= started], 30)[0]
    step("retrain started", f"pid {run['pid']}, log {run['log']}")
    finished = until("the retraining to end", lambda: [r for r in read_runs(runs) if r["event"] == "finished" and r["key"] == run["key"]])[0]
    if finished["exit_code"] != 0:
        raise ToolkitError(f"the retraining failed with exit code {finished['exit_code']}; its log: {run['log']}.")
    step("retrain finished", f"in {finished['seconds']} s")
    decision = read_json(ctx.paths.record(f"decision-{ctx.env}")) or {}
    if not decision or dt.datetime.fromisoformat(decision["time"]).timestamp() < int(started):
        raise ToolkitError(f"the retraining wrote no decision record; its log: {run['log']}.")
    step("decision", f"{decision['decision']}: {decision['reason']} ({decision['url']})")
    if decision["decision"] == "release":
        answer = runtime.smoke_test()
        serving = http_json(f"{url}/v1/model")["model_version"]
        if serving != decision["challenger"]["version"]:
            raise ToolkitError(f"the challenger {decision['challenger']['version']} was released but {serving} serves.")
        step("serving", f"challenger {serving} serves; smoke prediction {answer['prediction']['label']}")
    else:
        step("serving", f"champion {http_json(f'{url}/v1/model')['model_version']} keeps serving")
    return steps
