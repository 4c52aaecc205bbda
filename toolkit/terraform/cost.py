"""The monthly cost of a stack's resources, line by line, each with its price's source.

Like Infracost, a resource becomes priced components (an EKS cluster: cluster hours; a NAT
gateway: hours and processed GB; a node group: its instances and their root volumes), each
quantity × a price looked up by service and usage type (price_table.json, node_prices.json). What
a plan cannot know (GB stored, requests, samples) comes from the environment's usage file
(usage.py); such lines are marked as usage-based. A resource type that costs nothing by itself is
counted as free; one the table cannot price is listed as "not priced", never shown as $0.

The same resources are priced from a plan (before: its prior state; after: its planned values) or
from a synthesized stack (`toolkit cost`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolkit.terraform.usage import UsageConfig

HERE = Path(__file__).resolve().parent
PRICE_TABLE, NODE_PRICES = HERE / "price_table.json", HERE / "node_prices.json"

# Cost nothing by themselves (what they drive is priced elsewhere: a flow log's bytes in its log
# group, a launch template's volume with its node group).
FREE_TYPES = {
    "aws_vpc", "aws_subnet", "aws_route_table", "aws_route_table_association", "aws_internet_gateway",
    "aws_default_security_group", "aws_security_group", "aws_iam_role", "aws_iam_role_policy", "aws_iam_role_policy_attachment",
    "aws_iam_openid_connect_provider", "aws_kms_alias", "aws_ecr_lifecycle_policy", "aws_ecr_repository_policy", "aws_s3_bucket_lifecycle_configuration",
    "aws_s3_bucket_policy", "aws_s3_bucket_public_access_block", "aws_s3_bucket_server_side_encryption_configuration",
    "aws_s3_bucket_versioning", "aws_secretsmanager_secret_policy", "aws_sns_topic_policy", "aws_sns_topic_subscription",
    "aws_sqs_queue_policy", "aws_eks_access_entry", "aws_eks_access_policy_association", "aws_launch_template", "aws_flow_log",
    "aws_prometheus_rule_group_namespace", "aws_prometheus_alert_manager_definition",
}


@dataclass(frozen=True)
class Price:
    service: str
    usage_type: str
    unit: str
    region: str
    price: float
    source: str
    estimated: bool = False


class PriceTable:
    def __init__(self, table: dict, nodes: dict) -> None:
        self.date, self.hours = table["date"], table["hours_per_month"]
        self.prefix, self.sources = table["region_prefix"], table["sources"]
        self.prices = {(p["region"], p["service"], p["usage_type"]): Price(**p) for p in table["prices"]}
        self.sources["ec2"] = {"url": "https://aws.amazon.com/ec2/pricing/on-demand/", "retrieved": nodes["date"] + " (node_prices.json)"}
        self.spot_factor = nodes["spot_factor"]
        for region, hourly in nodes["hourly"].items():
            estimated = set(nodes.get("estimated", {}).get(region, []))
            for instance, price in hourly.items():
                usage = f"{self.prefix.get(region, region)}-BoxUsage:{instance}"
                self.prices[(region, "AmazonEC2", usage)] = Price("AmazonEC2", usage, "Hrs", region, price, "ec2", instance in estimated)

    @classmethod
    def load(cls) -> PriceTable:
        return cls(json.loads(PRICE_TABLE.read_text()), json.loads(NODE_PRICES.read_text()))

    def get(self, region: str, service: str, usage: str) -> Price | None:
        """`usage`: the usage type without its region prefix (e.g. NatGateway-Hours)."""
        return self.prices.get((region, service, f"{self.prefix.get(region, region)}-{usage}"))


@dataclass
class CostLine:
    address: str
    construct: str
    what: str
    quantity: float
    unit: str
    unit_price: float  # per price_unit, as the price list states it
    price_unit: str
    monthly: float
    source: str
    usage_based: bool = False
    estimated: bool = False


@dataclass
class Estimate:
    lines: list[CostLine] = field(default_factory=list)
    not_priced: Counter = field(default_factory=Counter)  # resource type → count
    free: Counter = field(default_factory=Counter)
    unpriced_addresses: set = field(default_factory=set)

    @property
    def total(self) -> float:
        return sum(line.monthly for line in self.lines)

    def to_dict(self) -> dict:
        return {"monthly_total": round(self.total, 2), "lines": [asdict(line) for line in self.lines],
                "not_priced": dict(self.not_priced), "free": dict(self.free)}


def _block(value):
    """A nested block: a list of one object in plan JSON, an object in a synthesized stack."""
    if isinstance(value, list):
        return value[0] if value else {}
    return value if isinstance(value, dict) else {}


def _ebs_usage(volume_type: str | None) -> str:
    """The price list's usage type of an EBS volume type (io1 is "piops" there)."""
    volume = volume_type or "gp3"
    return f"EBS:VolumeUsage.{'piops' if volume == 'io1' else volume}"


def _number(value, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


class _Pricer:
    """Turns one resource into its cost lines (None: the table cannot price it)."""

    def __init__(self, table: PriceTable, region: str, usage: UsageConfig, launch_templates: dict[str, dict]) -> None:
        self.table, self.region, self.usage, self.launch_templates = table, region, usage, launch_templates

    def line(self, address, construct, service, usage_type, what, quantity, unit, per=1.0, usage_based=False) -> CostLine | None:
        price = self.table.get(self.region, service, usage_type)
        if price is None:
            return None
        return CostLine(address, construct, what, round(quantity, 4), unit, price.price, price.unit, round(quantity * price.price / per, 2),
                        price.source, usage_based, price.estimated)

    def lines(self, address: str, construct: str, kind: str, values: dict) -> list[CostLine] | None:
        hours, u = self.table.hours, self.usage
        args = (address, construct)
        specs = {
            "aws_eks_cluster": lambda: [self.line(*args, "AmazonEKS", "AmazonEKS-Hours:perCluster", "EKS cluster hours", hours, "h")],
            "aws_nat_gateway": lambda: [
                self.line(*args, "AmazonEC2", "NatGateway-Hours", "NAT gateway hours", hours, "h"),
                self.line(*args, "AmazonEC2", "NatGateway-Bytes", "NAT processed data", u.nat_gateway.processed_gb, "GB", usage_based=True)],
            "aws_eip": lambda: [self.line(*args, "AmazonVPC", "PublicIPv4:InUseAddress", "public IPv4 address hours", hours, "h")],
            "aws_kms_key": lambda: [
                self.line(*args, "awskms", "KMS-Keys", "KMS key", 1, "key"),
                self.line(*args, "awskms", "KMS-Requests", "KMS requests", u.kms_key.requests, "requests", per=10_000, usage_based=True)],
            "aws_secretsmanager_secret": lambda: [
                self.line(*args, "AWSSecretsManager", "AWSSecretsManager-Secrets", "secret", 1, "secret"),
                self.line(*args, "AWSSecretsManager", "AWSSecretsManager-APIRequest", "secret API calls", u.secret.api_calls, "calls",
                          per=10_000, usage_based=True)],
            "aws_cloudwatch_log_group": lambda: [
                self.line(*args, "AmazonCloudWatch", "DataProcessing-Bytes", "log ingestion", u.log_group.ingested_gb, "GB", usage_based=True),
                self.line(*args, "AmazonCloudWatch", "TimedStorage-ByteHrs", "log storage", u.log_group.stored_gb, "GB-month",
                          usage_based=True)],
            "aws_prometheus_workspace": lambda: [
                self.line(*args, "AmazonPrometheus", "AMP:MetricSampleCount", "AMP samples ingested",
                          u.prometheus.samples_ingested_millions * 1e6, "samples", per=1e7, usage_based=True),
                self.line(*args, "AmazonPrometheus", "AMP:MetricStorageByteHrs", "AMP storage", u.prometheus.stored_gb, "GB-month",
                          usage_based=True),
                self.line(*args, "AmazonPrometheus", "AMP:QuerySamplesProcessed", "AMP query samples",
                          u.prometheus.query_samples_billions * 1e9, "samples", per=1e9, usage_based=True)],
            "aws_s3_bucket": lambda: [
                self.line(*args, "AmazonS3", "TimedStorage-ByteHrs", "S3 Standard storage", u.bucket.stored_gb, "GB-month", usage_based=True),
                self.line(*args, "AmazonS3", "Requests-Tier1", "S3 PUT/COPY/POST/LIST", u.bucket.write_requests_thousands * 1000,
                          "requests", per=1000, usage_based=True),
                self.line(*args, "AmazonS3", "Requests-Tier2", "S3 GET", u.bucket.read_requests_thousands * 1000, "requests", per=1000,
                          usage_based=True)],
            "aws_ecr_repository": lambda: [
                self.line(*args, "AmazonECR", "TimedStorage-ByteHrs", "ECR image storage", u.registry.stored_gb, "GB-month", usage_based=True)],
            "aws_sns_topic": lambda: [
                self.line(*args, "AmazonSNS", "Requests-Tier1", "SNS publishes", u.topic.requests_millions * 1e6, "requests", per=1e6,
                          usage_based=True)],
            "aws_sqs_queue": lambda: [
                self.line(*args, "AWSQueueService", "Requests-RBP", "SQS requests", u.queue.requests_millions * 1e6, "requests", per=1e6,
                          usage_based=True)],
            "aws_ebs_volume": lambda: [
                self.line(*args, "AmazonEC2", _ebs_usage(values.get("type")), f"EBS volume ({values.get('type') or 'gp3'})",
                          _number(values.get("size")), "GB-month")],
            "aws_eks_node_group": lambda: self.node_group(address, construct, values),
        }
        if kind not in specs:
            return None
        lines = specs[kind]()
        return None if any(line is None for line in lines) else lines

    def node_group(self, address: str, construct: str, values: dict) -> list[CostLine | None]:
        """Its instances at desired size (the first instance type: what the group prefers; spot as an
        estimate) and each instance's root volume (from its launch template, else the group's disk)."""
        types = values.get("instance_types") or []
        nodes = _number(_block(values.get("scaling_config")).get("desired_size"))
        spot = values.get("capacity_type") == "SPOT"
        price = self.table.get(self.region, "AmazonEC2", f"BoxUsage:{types[0]}") if types else None
        if price is None:
            return [None]
        factor = self.table.spot_factor if spot else 1.0
        instance = CostLine(address, construct, f"{types[0]} {'spot (estimated)' if spot else 'on-demand'} × {nodes:g}",
                            nodes * self.table.hours, "h", round(price.price * factor, 6), "h",
                            round(nodes * self.table.hours * price.price * factor, 2), "ec2", estimated=spot or price.estimated)
        template = self.launch_templates.get(address)
        if template is not None:
            ebs = _block(_block(template.get("block_device_mappings")).get("ebs"))
            size, volume = _number(ebs.get("volume_size"), 20), ebs.get("volume_type") or "gp3"
        else:
            size, volume = _number(values.get("disk_size"), 20), "gp2"
        disk = self.line(address, construct, "AmazonEC2", _ebs_usage(volume), f"root volumes ({volume}, {size:g} GB × {nodes:g})",
                         size * nodes, "GB-month")
        return [instance, disk]


def estimate(resources: list[tuple[str, str, dict]], constructs: dict[str, str], region: str, usage: UsageConfig,
             template_refs: dict[str, str], table: PriceTable | None = None) -> Estimate:
    """Price (address, type, values) triples; `template_refs`: node group → launch template address
    (launch_template_refs), whose values among `resources` price the group's root volumes."""
    values = {address: body for address, _, body in resources}
    templates = {group: values[template] for group, template in template_refs.items() if template in values}
    pricer, result = _Pricer(table or PriceTable.load(), region, usage, templates), Estimate()
    for address, kind, values in resources:
        if kind in FREE_TYPES:
            result.free[kind] += 1
            continue
        lines = pricer.lines(address, constructs.get(address, address), kind, values or {})
        if lines is None:
            result.not_priced[kind] += 1
            result.unpriced_addresses.add(address)
        else:
            result.lines += lines
    return result


_TEMPLATE_REF = re.compile(r"aws_launch_template\.([A-Za-z0-9_-]+)\.")


def launch_template_refs(synth: dict) -> dict[str, str]:
    """Node group address → its launch template's address (from the synthesized configuration)."""
    refs = {}
    for name, body in synth.get("resource", {}).get("aws_eks_node_group", {}).items():
        match = _TEMPLATE_REF.search(json.dumps(body.get("launch_template", "")))
        if match:
            refs[f"aws_eks_node_group.{name}"] = f"aws_launch_template.{match.group(1)}"
    return refs


def stack_resources(synth: dict) -> list[tuple[str, str, dict]]:
    return [(f"{kind}.{name}", kind, body) for kind, items in synth.get("resource", {}).items() for name, body in items.items()]


def stack_estimate(synth: dict, constructs: dict[str, str], region: str, usage: UsageConfig, table: PriceTable | None = None) -> Estimate:
    """A synthesized stack as it would be created (`toolkit cost`)."""
    return estimate(stack_resources(synth), constructs, region, usage, launch_template_refs(synth), table)


def plan_estimates(plan: dict, synth: dict, constructs: dict[str, str], region: str, usage: UsageConfig,
                   table: PriceTable | None = None) -> tuple[Estimate, Estimate]:
    """(before, after): the plan's prior state and its planned values, managed resources only."""
    table = table or PriceTable.load()
    before, after = [], []
    for rc in plan.get("resource_changes", []):
        if rc.get("mode", "managed") != "managed":
            continue
        change = rc.get("change", {})
        if change.get("before") is not None:  # none for a create: the prior state has no such resource
            before.append((rc["address"], rc["type"], change.get("before") or {}))
        if change.get("after") is not None:
            after.append((rc["address"], rc["type"], change.get("after") or {}))
    refs = launch_template_refs(synth)
    priced = (estimate(before, constructs, region, usage, refs, table), estimate(after, constructs, region, usage, refs, table))
    # A resource priced on one side only (an instance type the table lacks) would fake a delta: it
    # is left out of both, and listed as not priced on both.
    unpriced = priced[0].unpriced_addresses | priced[1].unpriced_addresses
    kinds = {rc["address"]: rc["type"] for rc in plan.get("resource_changes", [])}
    for side, resources in zip(priced, (before, after), strict=True):
        present = {address for address, _, _ in resources}
        side.lines = [line for line in side.lines if line.address not in unpriced]
        side.unpriced_addresses = unpriced & present
        side.not_priced = Counter(kinds[address] for address in side.unpriced_addresses)
    return priced
