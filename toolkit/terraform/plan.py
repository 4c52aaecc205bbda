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
from toolkit.terraform.synth import synthesize
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


def run_checkov(ctx: Context, plan_json: Path) -> dict | None:
    """checkov on the plan JSON (the tools venv); None when checkov is not installed."""
    checkov = ctx.paths.tools_bin / "checkov"
    if not checkov.exists():
        return None
    result = subprocess.run([str(checkov), "-f", str(plan_json), "--framework", "terraform_plan", "--output", "json", "--quiet",
                             "--skip-check", ",".join(SKIPS)], capture_output=True, text=True)
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise ToolkitError(f"checkov failed on {plan_json} (exit {result.returncode}): {result.stderr[-1000:]}")
    report = json.loads(result.stdout)
    # checkov prints a bare summary (no "results") when a plan has no resources to check.
    return summarize_checkov(report if isinstance(report, list) or "results" in report else [])


def plan_review(ctx: Context, stack_dir: Path | None = None, destroy: bool = False, checkov: bool = True,
                on_step=lambda step: None) -> PlanResult:
    """Plan the environment's stack and review it. `stack_dir`: an already synthesized stack (skip synthesis)."""
    timings = {}
    start = time.monotonic()
    if stack_dir is None:
        on_step("synth")
        stack_dir = synthesize(ctx, ctx.paths.synth_dir)
        timings["synth_s"] = round(time.monotonic() - start, 1)
    workspace = Workspace(stack_dir, ctx.paths)
    step = time.monotonic()
    on_step("init")
    workspace.init()
    on_step("plan")
    planfile = stack_dir / "toolkit.tfplan"
    workspace.plan(planfile, destroy=destroy)
    plan = workspace.show_json(planfile)
    show_text = workspace.show_text(planfile)
    timings["terraform_s"] = round(time.monotonic() - step, 1)
    findings = None
    if checkov:
        step = time.monotonic()
        on_step("checkov")
        plan_json = stack_dir / "toolkit.tfplan.json"
        plan_json.write_text(json.dumps(plan))
        findings = run_checkov(ctx, plan_json)
        timings["checkov_s"] = round(time.monotonic() - step, 1)
    synth = json.loads((stack_dir / "cdk.tf.json").read_text())
    usage, usage_file = load_usage(ctx.root, ctx.env)
    review = build_review(ctx.env, ctx.config.aws.region, plan, synth, findings, usage,
                          str(usage_file.relative_to(ctx.root)) if usage_file else None)
    timings["total_s"] = round(time.monotonic() - start, 1)
    return PlanResult(review, render_markdown(review, show_text), timings)

