"""`toolkit monitor`: what the environment's Prometheus says now."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.options import JSON_OPTION, echo_err, emit_json, pass_context


@click.command()
@pass_context
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Also draw the dashboard's main panels to this PNG.")
@click.option("--minutes", type=click.FloatRange(min=1), default=30, show_default=True, help="Time range of the --png panels.")
@JSON_OPTION
def monitor(ctx, png: Path | None, minutes: float, as_json: bool) -> None:
    """Show ENV's service levels now: request rate, 5xx ratio, p50/p99 latency against the SLO,
    the model version, the predicted class shares, the GPU utilisation of running training pods
    (from the DCGM exporter, where there is one) and the firing alerts.

    \b
    Read from ENV's Prometheus HTTP API: on the local environment the Prometheus of `toolkit local
    up`; in the cloud the AMP workspace's query endpoint from the stack outputs, signed with SigV4
    (your AWS credentials)."""
    from toolkit.monitoring.query import PrometheusClient, sigv4_signer, snapshot

    env = ctx.env
    if ctx.emulated:
        client = PrometheusClient(f"http://127.0.0.1:{ctx.config.monitoring.local.prometheus_port}")
    else:
        from toolkit.paths import Output
        from toolkit.terraform.outputs import stack_outputs

        endpoint = stack_outputs(ctx).get(Output.PROMETHEUS_ENDPOINT)
        if not endpoint:
            from toolkit.errors import ToolkitError

            raise ToolkitError(f"{env} has no AMP workspace in its stack outputs (monitoring.amp.enabled, `make deploy ENV={env}`).")
        client = PrometheusClient(endpoint, signer=sigv4_signer(ctx.config))
    now = snapshot(client, ctx.config)
    if png is not None:
        from toolkit.monitoring.plots import render_png

        now["png"] = str(render_png(client, ctx.config, png, minutes, now))
    if as_json:
        emit_json(now)
        return
    _print(now)
    if png is not None:
        echo_err(f"wrote {png}")


def _print(now: dict) -> None:
    def num(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    p99_ok = now["p99_ms"] is None or now["p99_ms"] <= now["slo_p99_ms"]
    errors_ok = now["error_ratio"] is None or now["error_ratio"] <= now["max_error_ratio"]
    click.echo(f"env       {now['env']}")
    click.echo(f"requests  {num(now['request_rate'], '.2f')}/s   5xx {num(now['error_ratio'], '.2%')} "
               f"(limit {now['max_error_ratio']:.1%}) {'ok' if errors_ok else 'OVER'}")
    click.echo(f"latency   p50 {num(now['p50_ms'], '.1f')} ms   p99 {num(now['p99_ms'], '.1f')} ms "
               f"(SLO {now['slo_p99_ms']} ms) {'ok' if p99_ok else 'OVER'}")
    click.echo(f"model     {', '.join(now['model_versions']) or '-'}")
    shares = "  ".join(f"{label}: {share:.0%}" for label, share in sorted(now["predicted_class_share"].items()))
    click.echo(f"classes   {shares or '-'}")
    for gpu in now.get("training_gpu_utilisation", []):
        click.echo(f"training  {gpu['pod']} GPU {gpu['gpu']}: {gpu['percent']:.0f}% busy (DCGM)")
    if not now["firing_alerts"]:
        click.echo("alerts    none firing")
    for alert in now["firing_alerts"]:
        click.echo(f"alert     {alert['alertname']} ({alert['severity']}) since {alert['since']}: {alert['summary']}")


COMMANDS = [monitor]
