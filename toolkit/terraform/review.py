"""A Terraform plan (`terraform show -json`) as a pull-request review in Markdown.

What reviewers of Atlantis/tfcmt/Infracost comments ask for: a one-line headline, resources
grouped by action under the names people know (the CDKTF construct path, not the hashed
address), what changes and what forces a replacement, a loud warning before anything protected
is destroyed, the node-pool cost delta, policy findings, and the full plan folded away, all
under GitHub's comment limit and with nothing secret in it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

COMMENT_LIMIT = 65_536
# "forget": a `removed` block with destroy = false; the object stays in AWS but leaves Terraform's care.
ACTIONS = ["create", "update", "replace", "delete", "forget", "move", "import", "read"]
SYMBOL = {"create": "+", "update": "~", "replace": "±", "delete": "-", "forget": "⊘", "move": "→", "import": "⇐", "read": "≡"}
# Losing one of these loses the platform or its data: cluster, node groups, registry, artifact store.
PROTECTED_TYPES = {"aws_eks_cluster": "EKS cluster", "aws_eks_node_group": "node group", "aws_ecr_repository": "registry",
                   "aws_s3_bucket": "S3 bucket", "aws_kms_key": "KMS key (encrypts the above)"}
HINT = {"forget": " — leaves Terraform's state, stays in AWS", "read": " — data sources"}
MARKER = "<!-- toolkit-plan-review:{env} -->"
PRICES = Path(__file__).resolve().parent / "node_prices.json"


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
class PoolCost:
    """Monthly cost of a node group before and after; None where its instance type has no price."""

    name: str
    before_min: float | None
    before_desired: float | None
    after_min: float | None
    after_desired: float | None
    note: str = ""

    @property
    def unknown(self) -> bool:
        return None in (self.before_min, self.before_desired, self.after_min, self.after_desired)


@dataclass
class Review:
    env: str
    changes: list[Change]
    costs: list[PoolCost]
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
                "costs": [c.__dict__ for c in self.costs], "checkov": self.checkov}


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


def node_pool_costs(plan: dict, region: str, prices: dict | None = None) -> list[PoolCost]:
    """Monthly cost of each node group before and after, at min and desired size."""
    prices = prices or json.loads(PRICES.read_text())
    table = prices["hourly"].get(region, {})
    hours = prices["hours_per_month"]

    estimated = set(prices.get("estimated", {}).get(region, []))

    def monthly(state: dict | None) -> tuple[float | None, float | None, str]:
        """Priced by the pool's first instance type (what the managed node group prefers)."""
        if not state:
            return 0.0, 0.0, ""
        types = state.get("instance_types") or []
        scaling = (state.get("scaling_config") or [{}])[0]
        if not types or types[0] not in table:
            return None, None, f"no price for {types[0] if types else 'an unknown instance type'} in {region}"
        hourly = table[types[0]] * (prices["spot_factor"] if state.get("capacity_type") == "SPOT" else 1.0)
        note = f"{types[0]} price estimated" if types[0] in estimated else ""
        return hourly * hours * scaling.get("min_size", 0), hourly * hours * scaling.get("desired_size", 0), note

    costs = []
    for rc in plan.get("resource_changes", []):
        if rc["type"] != "aws_eks_node_group" or action_of(rc) in ("no-op", "read"):
            continue
        before, after = rc["change"].get("before"), rc["change"].get("after")
        b_min, b_desired, b_note = monthly(before)
        a_min, a_desired, a_note = monthly(after)
        name = (after or before or {}).get("node_group_name") or rc["address"]
        costs.append(PoolCost(name, b_min, b_desired, a_min, a_desired, "; ".join(dict.fromkeys(n for n in (b_note, a_note) if n))))
    return costs


def build_review(env: str, region: str, plan: dict, synth: dict | None = None, checkov: dict | None = None) -> Review:
    return Review(env, changes_from_plan(plan, synth), node_pool_costs(plan, region), checkov)


def summarize_checkov(report: dict | list) -> dict:
    """checkov's JSON (one report or a list of them) → passed/failed/skipped and the failed checks."""
    reports = report if isinstance(report, list) else [report]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    totals = {k: sum(r.get("summary", {}).get(k, 0) for r in reports) for k in ("passed", "failed", "skipped")}
    return {**totals, "failed_checks": failed}


# ---------------------------------------------------------------- Markdown


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.0f}"


def _delta(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return "unknown"
    diff = after - before
    return "±$0" if abs(diff) < 0.5 else f"{'+' if diff > 0 else '−'}{_money(abs(diff))}"


def _total(costs: list[PoolCost], key: str) -> float:
    """Over the priced pools only, so before and after compare the same pools."""
    return sum(getattr(c, key) for c in costs if not c.unknown)


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
    if review.costs:
        head += ["| node pool | monthly at min size | monthly at desired size | change (min / desired) |",
                 "| --- | --- | --- | --- |"]
        for c in review.costs[:50]:
            head.append(f"| `{c.name}` | {_money(c.before_min)} → {_money(c.after_min)} | {_money(c.before_desired)} → "
                        f"{_money(c.after_desired)} | {_delta(c.before_min, c.after_min)} / {_delta(c.before_desired, c.after_desired)}"
                        f"{' (' + c.note + ')' if c.note else ''} |")
        total = {k: _total(review.costs, k) for k in ("before_min", "after_min", "before_desired", "after_desired")}
        unpriced = [c.name for c in review.costs if c.unknown]
        label = "**total (incomplete)**" if unpriced else "**total**"
        head += [f"| {label} | {_money(total['before_min'])} → {_money(total['after_min'])} | {_money(total['before_desired'])} → "
                 f"{_money(total['after_desired'])} | **{_delta(total['before_min'], total['after_min'])} / "
                 f"{_delta(total['before_desired'], total['after_desired'])}** |", ""]
        if unpriced:
            head += ["> [!WARNING]", f"> The total leaves out {', '.join(f'`{n}`' for n in unpriced)}: no price for the instance "
                     "type in `toolkit/terraform/node_prices.json`. Add it there to see the full cost.", ""]
        head += [f"<sub>Prices: `toolkit/terraform/node_prices.json` ({json.loads(PRICES.read_text())['date']}); on-demand, "
                 "spot estimated.</sub>", ""]
    if review.checkov is not None:
        ck = review.checkov
        head.append(f"**checkov** on the plan: {ck['passed']} passed, {ck['failed']} failed, {ck['skipped']} skipped")
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
        return f"<details><summary>Full plan (<code>terraform show</code>)</summary>\n\n```\n{text}\n```\n</details>\n" if text else ""

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
