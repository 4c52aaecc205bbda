"""`toolkit plan`: synthesize one stack, terraform init/plan/show through the adapter, checkov on
the plan, and the review (toolkit.terraform.review)."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.context import Context
from toolkit.errors import ToolkitError
from toolkit.terraform.adapter import Workspace
from toolkit.terraform.checkov_skips import SKIPS
from toolkit.terraform.review import Review, build_review, render_markdown, summarize_checkov
from toolkit.terraform.synth import synthesize_if_changed
from toolkit.terraform.usage import load_usage

EXIT_PROTECTED = 3  # CI requires an explicit approval label for this


class ProtectedResourcesError(ToolkitError):
    """The plan deletes or replaces a protected resource: reviewed, but not to be applied unasked."""

    exit_code = EXIT_PROTECTED


@dataclass
class PlanResult:
    review: Review
    markdown: str
    timings: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_PROTECTED if self.review.dangerous else 0


def run_checkov(ctx: Context, target: Path, framework: str = "terraform_json") -> dict | None:
    """checkov on the synthesized stack (or a plan JSON with framework terraform_plan), from the
    tools venv; None when checkov is not installed."""
    checkov = ctx.paths.tools_bin / "checkov"
    if not checkov.exists():
        return None
    result = subprocess.run([str(checkov), "-f", str(target), "--framework", framework, "--output", "json", "--quiet",
                             "--skip-check", ",".join(SKIPS)], capture_output=True, text=True)
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise ToolkitError(f"checkov failed on {target} (exit {result.returncode}): {result.stderr[-1000:]}")
    report = json.loads(result.stdout)
    # checkov prints a bare summary (no "results") when there are no resources to check.
    return summarize_checkov(report if isinstance(report, list) or "results" in report else [])


def plan_review(ctx: Context, stack_dir: Path | None = None, destroy: bool = False, checkov: bool = True,
                on_step=lambda step: None) -> PlanResult:
    """Plan the environment's stack and review it. `stack_dir`: an already synthesized stack (skip synthesis).

    Where the time goes (local, warm: bench/plan_speed.py): synthesis is skipped when its inputs are
    unchanged, `init` when the providers, backend and lock file are; checkov scans the synthesized
    stack in a thread while Terraform plans; the plan's text comes from `plan` itself, so only
    `show -json` loads the provider a second time."""
    from concurrent.futures import ThreadPoolExecutor

    timings = {}
    start = time.monotonic()
    if stack_dir is None:
        on_step("synth")
        stack_dir, fresh = synthesize_if_changed(ctx, ctx.paths.synth_dir)
        timings["synth_s"] = round(time.monotonic() - start, 1) if fresh else "unchanged"
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkov") as pool:
        scan = pool.submit(_timed, run_checkov, ctx, stack_dir / "cdk.tf.json") if checkov else None
        workspace = Workspace(stack_dir, ctx.paths)
        step = time.monotonic()
        on_step("init")
        timings["init"] = "ran" if workspace.init_if_needed() else "reused"
        on_step("plan")
        planfile = stack_dir / "toolkit.tfplan"
        _, show_text = workspace.plan(planfile, destroy=destroy)
        plan = workspace.show_json(planfile)
        timings["terraform_s"] = round(time.monotonic() - step, 1)
        findings = None
        if scan is not None:
            on_step("checkov")
            findings, seconds = scan.result()
            timings["checkov_s"] = seconds
    synth = json.loads((stack_dir / "cdk.tf.json").read_text())
    usage, usage_file = load_usage(ctx.root, ctx.env)
    review = build_review(ctx.env, ctx.config.aws.region, plan, synth, findings, usage,
                          str(usage_file.relative_to(ctx.root)) if usage_file else None)
    timings["total_s"] = round(time.monotonic() - start, 1)
    return PlanResult(review, render_markdown(review, show_text), timings)


def _timed(fn, *args):
    start = time.monotonic()
    return fn(*args), round(time.monotonic() - start, 1)
