"""`toolkit monitor --png`: the dashboard's main panels drawn from range queries with matplotlib,
for people who would rather look than read (Grafana itself cannot be installed here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from toolkit.config import EnvironmentConfig
from toolkit.monitoring.panels import panels
from toolkit.monitoring.query import PrometheusClient

SCALE = {"s": (1000, "ms"), "percentunit": (100, "%"), "reqps": (1, "requests/s"), "ops": (1, "predictions/s"), "short": (1, "count"),
         "percent": (1, "%")}


def _legend(template: str, labels: dict) -> str:
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", str(value))
    return text


def render_png(client: PrometheusClient, config: EnvironmentConfig, path: Path, minutes: float = 30, snapshot: dict | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    shown = [p for p in panels(config) if p.kind == "timeseries"][:6]
    fig, axes = plt.subplots(3, 2, figsize=(13, 11), constrained_layout=True)
    for ax, panel in zip(axes.flat, shown, strict=False):
        factor, unit = SCALE.get(panel.unit, (1, panel.unit))
        plotted = False
        for query in panel.queries:
            for series in client.query_range(query.expr, minutes):
                times = [dt.datetime.fromtimestamp(float(t)) for t, _ in series["values"]]
                values = [float(v) * factor for _, v in series["values"]]
                ax.plot(times, values, label=_legend(query.legend, series["metric"]))
                plotted = True
        if panel.threshold is not None:
            ax.axhline(panel.threshold * factor, color="red", linestyle="--", linewidth=1, label="limit (SLO)")
        if not plotted:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="grey")
            now = dt.datetime.now()
            ax.set_xlim(now - dt.timedelta(minutes=minutes), now)
        ax.set_title(panel.title)
        ax.set_ylabel(unit)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.grid(alpha=0.3)
        if plotted or panel.threshold is not None:
            ax.legend(fontsize=8, loc="upper left")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    title = f"{config.name}: last {minutes:g} minutes"
    if snapshot:
        versions = ", ".join(snapshot["model_versions"]) or "none"
        firing = ", ".join(a["alertname"] for a in snapshot["firing_alerts"]) or "none"
        title += f"   model {versions}   firing: {firing}"
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
