"""Metrics and alerts in the cloud: Amazon Managed Service for Prometheus and an SNS topic.

The AMP workspace (KMS-encrypted, logging to CloudWatch) holds the same rules as every other target
(a rule-groups namespace of toolkit/monitoring/rules.py's file); its alert manager routes the
alerts (toolkit/monitoring/alertmanager.py's tree) to the environment's KMS-encrypted SNS topic,
whose subscriptions come from config, and retrain alerts to the retrain queue (retrain_queue.py); a managed scraper reads the EKS cluster's serving pods,
the DCGM exporter and kube-state-metrics (which the cluster must run for the training alerts).
"""

from __future__ import annotations

from cdktf import Fn
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.data_aws_iam_policy_document import (
    DataAwsIamPolicyDocument,
    DataAwsIamPolicyDocumentStatement,
    DataAwsIamPolicyDocumentStatementCondition,
    DataAwsIamPolicyDocumentStatementPrincipals,
)
from cdktf_cdktf_provider_aws.prometheus_alert_manager_definition import PrometheusAlertManagerDefinition
from cdktf_cdktf_provider_aws.prometheus_rule_group_namespace import PrometheusRuleGroupNamespace
from cdktf_cdktf_provider_aws.prometheus_scraper import (
    PrometheusScraper,
    PrometheusScraperDestination,
    PrometheusScraperDestinationAmp,
    PrometheusScraperSource,
    PrometheusScraperSourceEks,
)
from cdktf_cdktf_provider_aws.prometheus_workspace import PrometheusWorkspace, PrometheusWorkspaceLoggingConfiguration
from cdktf_cdktf_provider_aws.sns_topic import SnsTopic
from cdktf_cdktf_provider_aws.sns_topic_policy import SnsTopicPolicy
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from modules.kms import EncryptionKey
from modules.lifecycle import protect
from modules.retrain_queue import RetrainQueue
from toolkit.config import EnvironmentConfig
from toolkit.monitoring import alertmanager, rules

SCRAPE_CONFIG = """global:
  scrape_interval: 30s
scrape_configs:
  - job_name: serving
    kubernetes_sd_configs: [{role: endpoints, namespaces: {names: [%(namespace)s]}}]
    relabel_configs:
      - {source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_name], regex: serving, action: keep}
      - {source_labels: [__meta_kubernetes_endpoint_port_name], regex: http, action: keep}
      - {source_labels: [__meta_kubernetes_pod_name], target_label: pod}
  - job_name: dcgm-exporter
    kubernetes_sd_configs: [{role: endpoints, namespaces: {names: [kube-system]}}]
    relabel_configs:
      - {source_labels: [__meta_kubernetes_service_name], regex: dcgm-exporter, action: keep}
  - job_name: kube-state-metrics
    kubernetes_sd_configs: [{role: endpoints}]
    relabel_configs:
      - {source_labels: [__meta_kubernetes_service_label_app_kubernetes_io_name], regex: kube-state-metrics, action: keep}
"""


class Monitoring(Construct):
    """Args:
        config: the environment (its `monitoring` section, region, account, workloads namespace).
        cluster_arn / subnet_ids: where the managed scraper reads from.
        prevent_destroy: protect the workspace's key and logs from `terraform destroy`.
    """

    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, cluster_arn: str, subnet_ids: list[str],
                 prevent_destroy: bool = False) -> None:
        super().__init__(scope, id)
        amp, name, region = config.monitoring.amp, config.cluster.name, config.aws.region
        self.key = EncryptionKey(self, "key", alias=f"{name}-monitoring", account_id=config.aws.account_id,
                                 description=f"AMP workspace, its logs and the alert topic of {name}",
                                 service_principals=[f"logs.{region}.amazonaws.com", "aps.amazonaws.com", "sns.amazonaws.com"],
                                 prevent_destroy=prevent_destroy, region=region, via_services=["aps", "sns", "sqs"])
        logs = CloudwatchLogGroup(self, "logs", name=f"/aws/prometheus/{name}", retention_in_days=amp.log_retention_days,
                                  kms_key_id=self.key.arn, lifecycle=protect(prevent_destroy))
        self.workspace = PrometheusWorkspace(
            self, "workspace", alias=f"{name}-metrics", kms_key_arn=self.key.arn,
            logging_configuration=PrometheusWorkspaceLoggingConfiguration(log_group_arn=f"{logs.arn}:*"))
        PrometheusRuleGroupNamespace(self, "rules", name=rules.GROUP, workspace_id=self.workspace.id, data=rules.render(config))

        self.topic = SnsTopic(self, "alerts", name=f"{name}-alerts", kms_master_key_id=self.key.arn)
        self.retrain = RetrainQueue(self, "retrain", name=name, kms_key_arn=self.key.arn, account_id=config.aws.account_id,
                                    workspace_arn=self.workspace.arn)
        SnsTopicPolicy(self, "alerts-policy", arn=self.topic.arn, policy=self._topic_policy(config.aws.account_id))
        for index, subscription in enumerate(amp.sns_subscriptions):
            SnsTopicSubscription(self, f"subscription-{index}", topic_arn=self.topic.arn, protocol=subscription.protocol,
                                 endpoint=subscription.endpoint)
        if amp.alert_manager_definition:
            # yamlencode, not a YAML string around the topic ARN: the definition stays valid through `cdktf synth --hcl`.
            routing = alertmanager.sns_config(config, self.topic.arn, self.retrain.topic.arn)
            PrometheusAlertManagerDefinition(self, "alertmanager", workspace_id=self.workspace.id,
                                             definition=Fn.yamlencode({"alertmanager_config": Fn.yamlencode(routing)}))
        if amp.managed_scraper:
            PrometheusScraper(self, "scraper", alias=f"{name}-scraper",
                              scrape_configuration=SCRAPE_CONFIG % {"namespace": config.workloads.namespace},
                              source=[PrometheusScraperSource(eks=[PrometheusScraperSourceEks(cluster_arn=cluster_arn,
                                                                                              subnet_ids=subnet_ids)])],
                              destination=[PrometheusScraperDestination(amp=[PrometheusScraperDestinationAmp(
                                  workspace_arn=self.workspace.arn)])])
        self.query_endpoint = self.workspace.prometheus_endpoint

    def _topic_policy(self, account_id: str) -> str:
        """Only this account's AMP workspace may publish to the topic."""
        document = DataAwsIamPolicyDocument(self, "alerts-policy-document", statement=[DataAwsIamPolicyDocumentStatement(
            sid="AmpPublishes", effect="Allow", actions=["sns:Publish", "sns:GetTopicAttributes"], resources=[self.topic.arn],
            principals=[DataAwsIamPolicyDocumentStatementPrincipals(type="Service", identifiers=["aps.amazonaws.com"])],
            condition=[
                DataAwsIamPolicyDocumentStatementCondition(test="StringEquals", variable="aws:SourceAccount", values=[account_id]),
                DataAwsIamPolicyDocumentStatementCondition(test="ArnEquals", variable="aws:SourceArn", values=[self.workspace.arn]),
            ])])
        return document.json
