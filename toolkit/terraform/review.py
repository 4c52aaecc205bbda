"""A Terraform plan (`terraform show -json`) as a pull-request review in Markdown.

What reviewers of Atlantis/tfcmt/Infracost comments ask for: a one-line headline, resources
grouped by action under the names people know (the CDKTF construct path, not the hashed
address), what changes and what forces a replacement, a loud warning before anything protected
is destroyed, the monthly cost before → after line by line with sources (cost.py), policy
findings, and the full plan folded away, all under GitHub's comment limit and with nothing
secret in it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field

from toolkit.terraform.cost import CostLine, Estimate, PriceTable, plan_estimates
from toolkit.terraform.usage import UsageConfig

COMMENT_LIMIT = 65_536
# "forget": a `removed` block with destroy = false; the object stays in AWS but leaves Terraform's care.
ACTIONS = ["create", "update", "replace", "delete", "forget", "move", "import", "read"]
SYMBOL = {"create": "+", "update": "~", "replace": "±", "delete": "-", "forget": "⊘", "move": "→", "import": "⇐", "read": "≡"}
# Losing one of these loses the platform or its data: cluster, node groups, registry, artifact store.
PROTECTED_TYPES = {"aws_eks_cluster": "EKS cluster", "aws_eks_node_group": "node group", "aws_ecr_repository": "registry",
                   "aws_s3_bucket": "S3 bucket", "aws_kms_key": "KMS key (encrypts the above)"}
HINT = {"forget": " — leaves Terraform's state, stays in AWS", "read": " — data sources"}
MARKER = "<!-- toolkit-plan-review:{env} -->"


# ---------------------------------------------------------------- masking


_SECRET_PATTERNS = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), "[private key masked]"),
    (re.compile(r"\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"), "[AWS key id masked]"),
    (re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}|xox[abprs]-[A-Za-z0-9-]{10,}|glpat-[A-Za-z0-9_-]{20})\b"),
     "[token masked]"),
    (re.compile(r"\bk8s-aws-v1\.[A-Za-z0-9_-]{20,}"), "[token masked]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"), "[token masked]"),  # JWT
    (re.compile(r"([a-z][a-z0-9+.-]*://[^/\s:@\"']+:)[^@\s\"'/]+@", re.I), r"\1****@"),  # password in a URL
    (re.compile(r"((?:secret|password|passwd|token|api[_-]?key|private[_-]?key)[\"']?\s*[:=]\s*[\"']?)(?!\(sensitive)"
                r"[^\s\"',}]{8,}", re.I), r"\1****"),
]


def mask_secrets(text: str) -> str:
    """Mask strings that look like credentials wherever they appear."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# ---------------------------------------------------------------- model


@dataclass
class Change:
    address: str
    type: str
    action: str
    construct: str
    attributes: list[str] = field(default_factory=list)  # "path: before → after" (updates, replacements)
    forced_by: list[str] = field(default_factory=list)  # attribute paths that force a replacement
    previous_address: str | None = None

    @property
    def protected(self) -> str | None:
        return PROTECTED_TYPES.get(self.type) if self.action in ("delete", "replace") else None


@dataclass
class CostReview:
    """The stack's monthly cost before (the plan's prior state) and after (its planned values)."""

    before: Estimate | None  # None: no plan, the stack as it would be created (`toolkit cost`)
    after: Estimate
    usage_file: str | None  # where the usage-based quantities came from; None: the defaults
    prices_date: str
    sources: dict

    def to_dict(self) -> dict:
        return {"before": self.before.to_dict() if self.before else None, "after": self.after.to_dict(), "usage_file": self.usage_file,
                "prices_date": self.prices_date, "sources": self.sources}


@dataclass
class Review:
    env: str
    changes: list[Change]
    cost: CostReview | None = None
    checkov: dict | None = None

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def has_changes(self) -> bool:
        return any(c.action != "read" for c in self.changes)

    @property
    def dangerous(self) -> list[Change]:
        return [c for c in self.changes if c.protected]

    def headline(self) -> str:
        counts = f"+{self.count('create')} ~{self.count('update')} -{self.count('delete')} ±{self.count('replace')}"
        extra = "".join(f" {SYMBOL[a]}{self.count(a)}" for a in ("forget", "move", "import") if self.count(a))
        return counts + extra

    def to_dict(self) -> dict:
        return {"env": self.env, "headline": self.headline(), "has_changes": self.has_changes,
                "protected_destroyed": [c.address for c in self.dangerous],
                "changes": [c.__dict__ | {"protected": c.protected} for c in self.changes],
                "cost": self.cost.to_dict() if self.cost else None, "checkov": self.checkov}


# ---------------------------------------------------------------- plan JSON → Review


def action_of(change: dict) -> str:
    actions = change["change"]["actions"]
    if actions in (["delete", "create"], ["create", "delete"]):
        return "replace"
    if change.get("change", {}).get("importing"):
        return "import"
    if actions == ["no-op"] and change.get("previous_address"):
        return "move"
    return actions[0] if actions[0] in ACTIONS else "no-op"


def construct_paths(synth: dict) -> dict[str, str]:
    """Terraform address → CDKTF construct path, from the synthesized stack's metadata."""
    paths = {}
    for block, prefix in (("resource", ""), ("data", "data.")):
        for kind, items in synth.get(block, {}).items():
            for name, body in items.items():
                path = body.get("//", {}).get("metadata", {}).get("path")
                if path:
                    paths[f"{prefix}{kind}.{name}"] = path.split("/", 1)[-1]  # without the stack name
    return paths


def _sensitive(marks, key):
    if marks is True:
        return True
    if isinstance(marks, dict):
        return marks.get(key, False)
    if isinstance(marks, list) and isinstance(key, int) and key < len(marks):
        return marks[key]
    return False


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "…"


def attribute_changes(before, after, unknown, before_marks, after_marks, path: str = "") -> list[str]:
    """Leaf differences as 'path: before → after'; sensitive values are never shown."""
    if before_marks is True or after_marks is True:
        return [f"{path or '(value)'}: (sensitive value changed)"] if before != after else []
    if unknown is True:
        return [f"{path}: {_short(before)} → (known after apply)"]
    if isinstance(before, dict) and isinstance(after, dict):
        lines = []
        for key in sorted(set(before) | set(after)):
            lines += attribute_changes(before.get(key), after.get(key), _sensitive(unknown, key) if unknown else False,
                                       _sensitive(before_marks, key), _sensitive(after_marks, key), f"{path}.{key}" if path else key)
        return lines
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        lines = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            lines += attribute_changes(b, a, _sensitive(unknown, i), _sensitive(before_marks, i), _sensitive(after_marks, i), f"{path}[{i}]")
        return lines
    if before == after:
        return []
    return [f"{path}: {_short(before)} → {_short(after)}"]


def _path(parts: list) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(parts))


def changes_from_plan(plan: dict, synth: dict | None = None) -> list[Change]:
    constructs = construct_paths(synth or {})
    changes = []
    for rc in plan.get("resource_changes", []):
        action = action_of(rc)
        if action == "no-op":
            continue
        change = rc["change"]
        item = Change(rc["address"], rc["type"], action, constructs.get(rc["address"], rc["address"]),
                      previous_address=rc.get("previous_address"))
        if action in ("update", "replace") or change["actions"] == ["update"]:  # also an import that changes attributes
            item.attributes = attribute_changes(change.get("before") or {}, change.get("after") or {},
                                                change.get("after_unknown") or {}, change.get("before_sensitive") or {},
                                                change.get("after_sensitive") or {})
            item.forced_by = [_path(p) for p in change.get("replace_paths", [])]
        changes.append(item)
    return changes


def build_review(env: str, region: str, plan: dict, synth: dict | None = None, checkov: dict | None = None,
                 usage: UsageConfig | None = None, usage_file: str | None = None) -> Review:
    synth = synth or {}
    table = PriceTable.load()
    before, after = plan_estimates(plan, synth, construct_paths(synth), region, usage or UsageConfig(), table)
    cost = CostReview(before, after, usage_file, table.date, table.sources)
    return Review(env, changes_from_plan(plan, synth), cost, checkov)


def summarize_checkov(report: dict | list) -> dict:
    """checkov's JSON (one report or a list of them) → passed/failed/skipped and the failed checks."""
    reports = report if isinstance(report, list) else [report]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    totals = {k: sum(r.get("summary", {}).get(k, 0) for r in reports) for k in ("passed", "failed", "skipped")}
    return {**totals, "failed_checks": failed}


# ---------------------------------------------------------------- Markdown


def _delta(before: float, after: float) -> str:
    diff = after - before
    return "±$0" if abs(diff) < 0.5 else f"{'+' if diff > 0 else '−'}${abs(diff):,.0f}"


def _amount(value: float) -> str:
    if abs(value) < 0.005:
        return "$0"
    return f"${value:,.2f}" if abs(value) < 100 else f"${value:,.0f}"


def _quantity(line: CostLine) -> str:
    number = f"{int(line.quantity):,}" if float(line.quantity).is_integer() else f"{line.quantity:,.4g}"
    return f"{number} {line.unit}"


def cost_rows(cost: CostReview) -> list[tuple[str, CostLine, float, float]]:
    """(construct, line, before, after) per priced component, in construct order: a component is a
    resource's n-th line, so a changed instance type or count is one row with its delta."""
    def keyed(estimate: Estimate) -> dict:
        seen: Counter = Counter()
        out = {}
        for line in estimate.lines:
            out[(line.address, seen[line.address])] = line
            seen[line.address] += 1
        return out

    after = keyed(cost.after)
    before = keyed(cost.before) if cost.before is not None else after
    rows = []
    for key in dict.fromkeys([*after, *before]):
        line = after.get(key) or before[key]
        rows.append((line.construct, line, before[key].monthly if key in before else 0.0, after[key].monthly if key in after else 0.0))
    return sorted(rows, key=lambda row: (row[0], row[1].address))


def cost_section(cost: CostReview, limit: int = 150) -> list[str]:
    """Total before → after and the difference, one line per priced component grouped by construct
    (what, quantity, unit price, monthly, source), what is not priced, and where figures come from."""
    total_after = cost.after.total
    total_before = cost.before.total if cost.before is not None else total_after
    lines = [f"**Monthly cost:** {_amount(total_before)} → {_amount(total_after)} (**{_delta(total_before, total_after)}**)"
             if cost.before is not None else f"**Monthly cost:** {_amount(total_after)}", ""]
    not_priced = (cost.before.not_priced if cost.before is not None else Counter()) | cost.after.not_priced
    if not_priced:
        lines += ["> [!WARNING]", "> Not priced (no entry in the price table; left out of the totals): "
                  + ", ".join(f"`{kind}` ×{count}" for kind, count in sorted(not_priced.items())), ""]
    lines += ["| construct | priced | quantity | unit price | monthly | source |", "| --- | --- | --- | --- | --- | --- |"]
    rows, previous = cost_rows(cost), None
    for construct, line, before, after in rows[:limit]:
        shown = f"`{construct}`" if construct != previous else "〃"
        previous = construct
        monthly = _amount(after) if abs(after - before) < 0.005 else f"{_amount(before)} → {_amount(after)} ({_delta(before, after)})"
        marks = "".join([" ᵘ" if line.usage_based else "", " (est.)" if line.estimated else ""])
        lines.append(f"| {shown} | {line.what}{marks} | {_quantity(line)} | ${line.unit_price:.6g}/{line.price_unit} | {monthly} | "
                     f"[{line.source}]({cost.sources.get(line.source, {}).get('url', '')}) |")
    if len(rows) > limit:
        lines.append(f"| … {len(rows) - limit} more lines | | | | | |")
    usage = f"`{cost.usage_file}`" if cost.usage_file else "the defaults (no usage file for this environment)"
    lines += ["", f"<sub>ᵘ usage-based: quantities from {usage}. Prices: `toolkit/terraform/price_table.json` and "
              f"`node_prices.json` ({cost.prices_date}), list prices without free tier; spot estimated. "
              f"Free by themselves (IAM, routing, policies): {sum(cost.after.free.values())} resources.</sub>", ""]
    return lines


def render_markdown(review: Review, show_text: str = "", limit: int = COMMENT_LIMIT) -> str:
    """The PR comment. Headline, warnings and costs always survive truncation; the full plan
    text and then the resource list are cut first, with a note saying so."""
    marker = MARKER.format(env=review.env)
    if not review.has_changes:
        return mask_secrets(f"{marker}\n### `platform-{review.env}`: no changes\n")
    head = [marker, f"### `platform-{review.env}` plan: `{review.headline()}`", ""]
    if review.dangerous:
        head += ["> [!CAUTION]", "> **This plan destroys protected resources.** Applying it loses what they hold; it needs the "
                 "`approved-destroy` label.", ">"]
        head += [f"> - **{c.action}** {c.protected} `{c.construct}` (`{c.address}`)"
                 + (f" — forced by {', '.join(f'`{p}`' for p in c.forced_by)}" if c.forced_by else "") for c in review.dangerous[:50]]
        if len(review.dangerous) > 50:
            head.append(f"> - … and {len(review.dangerous) - 50} more")
        head.append("")
    if review.cost is not None:
        head += cost_section(review.cost)
    if review.checkov is not None:
        ck = review.checkov
        head.append(f"**checkov** on the stack: {ck['passed']} passed, {ck['failed']} failed, {ck['skipped']} skipped")
        head += [f"- {line}" for line in ck["failed_checks"][:20]]
        if len(ck["failed_checks"]) > 20:
            head.append(f"- … and {len(ck['failed_checks']) - 20} more")
        head.append("")

    body = []
    for action in ACTIONS:
        group = [c for c in review.changes if c.action == action]
        if not group:
            continue
        body += [f"#### {SYMBOL[action]} {action} ({len(group)}){HINT.get(action, '')}", ""]
        for c in group:
            line = f"- `{c.construct}` <sub>`{c.address}`</sub>"
            if c.previous_address:
                line += f" (from `{c.previous_address}`)"
            body.append(line)
            if c.forced_by:
                body.append(f"  - forces replacement: {', '.join(f'`{p}`' for p in c.forced_by)}")
            body += [f"  - `{a}`" for a in c.attributes[:30]]
            if len(c.attributes) > 30:
                body.append(f"  - … {len(c.attributes) - 30} more attributes")
        body.append("")

    head_text = mask_secrets("\n".join(head) + "\n")
    body_text = mask_secrets("\n".join(body) + "\n")
    details = mask_secrets(show_text.strip())
    return _fit(head_text, body_text, details, limit)


def _fit(head: str, body: str, details: str, limit: int) -> str:
    def fold(text: str) -> str:
        return f"<details><summary>Full plan (<code>terraform plan</code>)</summary>\n\n```\n{text}\n```\n</details>\n" if text else ""

    full = head + body + fold(details)
    if len(full) <= limit:
        return full
    note = "\n> [!NOTE]\n> Truncated to fit GitHub's 65,536-character comment limit ({what}); the full plan is in the job's artifacts.\n"
    room = limit - len(head) - len(body) - len(fold("")) - len(note) - 200
    if room > 2000:
        return head + body + fold(details[:room].rsplit("\n", 1)[0] + "\n… (truncated)") + note.format(what="full plan text cut")
    room = limit - len(head) - len(note) - 200
    kept = body[:max(room, 0)].rsplit("\n", 1)[0] + "\n- … (truncated)\n" if room > 0 else ""
    return head + kept + note.format(what="resource list cut, full plan text omitted")
