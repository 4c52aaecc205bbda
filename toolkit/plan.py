"""`toolkit plan`: synthesize one stack, terraform init/plan/show through the adapter, checkov on
the plan, and the review (toolkit.review). Synthesis runs `python -m infra` in a subprocess so
this process never imports cdktf."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.review import Review, build_review, render_markdown, summarize_checkov
from toolkit.terraform import TerraformError, Workspace, terraform_environment

EXIT_PROTECTED = 3  # CI requires an explicit approval label for this


@dataclass
class PlanResult:
    review: Review
    markdown: str
    timings: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_PROTECTED if self.review.dangerous else 0


def synthesize(env: str, root: Path, outdir: Path) -> Path:
    result = subprocess.run([sys.executable, "-m", "infra", "--env", env, "--outdir", str(outdir)], cwd=root,
                            env={**os.environ, **terraform_environment(root)}, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolkitError(f"synthesizing platform-{env} failed (exit {result.returncode}):\n{(result.stderr or result.stdout)[-3000:]}")
    return outdir / "stacks" / f"platform-{env}"


def run_checkov(root: Path, plan_json: Path) -> dict | None:
    """checkov on the plan JSON (the tools venv); None when checkov is not installed."""
    from toolkit.checkov_skips import SKIPS

    checkov = root / ".venv-tools" / "bin" / "checkov"
    if not checkov.exists():
        return None
    result = subprocess.run([str(checkov), "-f", str(plan_json), "--framework", "terraform_plan", "--output", "json", "--quiet",
                             "--skip-check", ",".join(SKIPS)], capture_output=True, text=True)
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise ToolkitError(f"checkov failed on {plan_json} (exit {result.returncode}): {result.stderr[-1000:]}")
    report = json.loads(result.stdout)
    # checkov prints a bare summary (no "results") when a plan has no resources to check.
    return summarize_checkov(report if isinstance(report, list) or "results" in report else [])


def plan_review(config, root: Path, stack_dir: Path | None = None, destroy: bool = False, checkov: bool = True,
                on_step=lambda step: None) -> PlanResult:
    """Plan `config`'s stack and review it. `stack_dir`: an already synthesized stack (skip synthesis)."""
    timings = {}
    start = time.monotonic()
    if stack_dir is None:
        on_step("synth")
        stack_dir = synthesize(config.name, root, root / "cdktf.out")
        timings["synth_s"] = round(time.monotonic() - start, 1)
    workspace = Workspace(stack_dir, root)
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
        findings = run_checkov(root, plan_json)
        timings["checkov_s"] = round(time.monotonic() - step, 1)
    synth = json.loads((stack_dir / "cdk.tf.json").read_text())
    review = build_review(config.name, config.aws.region, plan, synth, findings)
    timings["total_s"] = round(time.monotonic() - start, 1)
    return PlanResult(review, render_markdown(review, show_text), timings)


__all__ = ["EXIT_PROTECTED", "PlanResult", "TerraformError", "plan_review", "synthesize"]
