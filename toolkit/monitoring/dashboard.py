"""The Grafana dashboard of an environment, built in code with grafana-foundation-sdk (Grafana 11.6
target) from the panels in panels.py, and shipped as JSON in toolkit/monitoring/dashboards/.

The SDK is a development dependency: the JSON files are generated with
`python -m toolkit.monitoring.dashboard` (`make dashboards`) and committed; a test fails when
they are stale. At run time the toolkit only reads the JSON (the Grafana sidecar ConfigMap).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from toolkit.config import EnvironmentConfig
from toolkit.monitoring.panels import panels

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"


def dashboard_file(env: str) -> Path:
    return DASHBOARDS / f"{env}.json"


def build(config: EnvironmentConfig) -> dict:
    from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos, Threshold, ThresholdsMode

    source = DataSourceRef(type_val="prometheus", uid="${datasource}")
    builder = (dashboard.Dashboard(f"ML platform: serving ({config.name})").uid(f"toolkit-serving-{config.name}")
               .tags(["toolkit", "ml-platform", config.name]).refresh("30s").time("now-3h", "now").timezone("browser")
               .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")))
    x = y = 0
    for panel in panels(config):
        if x + panel.width > 24:
            x, y = 0, y + 8
        kind = stat.Panel() if panel.kind == "stat" else timeseries.Panel()
        built = kind.title(panel.title).description(panel.description).unit(panel.unit).datasource(source) \
            .grid_pos(GridPos(h=8, w=panel.width, x=x, y=y))
        for ref, query in zip("ABCDEFGH", panel.queries, strict=False):
            built = built.with_target(prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref).datasource(source))
        if panel.threshold is not None:
            built = built.thresholds(dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([
                Threshold(value=None, color="green"), Threshold(value=panel.threshold, color="red")]))
            if panel.kind == "timeseries":  # the limit drawn as a dashed line
                built = built.thresholds_style(common.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
        builder = builder.with_panel(built)
        x += panel.width
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def render(config: EnvironmentConfig) -> str:
    return json.dumps(build(config), indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Write every environment's dashboard JSON."""
    from toolkit.config import load_all_environments

    DASHBOARDS.mkdir(exist_ok=True)
    for env, config in load_all_environments().items():
        dashboard_file(env).write_text(render(config))
        print(dashboard_file(env), file=sys.stderr)


if __name__ == "__main__":
    main()
