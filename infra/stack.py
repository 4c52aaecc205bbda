"""PlatformStack: everything one environment needs, driven by its `EnvironmentConfig`."""

from __future__ import annotations

from cdktf import Aspects, S3Backend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags
from constructs import Construct

from infra import emulator
from modules.artifact_store import ArtifactStore
from modules.ci_identity import CiIdentity, promotion_source_prefixes
from modules.cluster import Cluster
from modules.cluster_access import ClusterAccess
from modules.identity import WorkloadRole
from modules.monitoring import Monitoring
from modules.network import Network
from modules.node_pool import NodePool, NodeRole
from modules.registry import Registry
from modules.retrain_queue import CONSUME_ACTIONS
from modules.secret import Secret
from toolkit.config import EnvironmentConfig, promotion_peers
from toolkit.paths import Output, stack_name
from toolkit.store import layout


class PlatformStack(TerraformStack):
    def __init__(self, scope: Construct, config: EnvironmentConfig) -> None:
        super().__init__(scope, stack_name(config.name))
        self.config = config
        self._provider(config)
        self._backend(config)
        protect = config.prevent_destroy
        account = config.aws.account_id

        network = Network(self, "network", config=config.network, cluster_name=config.cluster.name,
                          account_id=account, region=config.aws.region)
        cluster = Cluster(self, "cluster", config=config.cluster, subnet_ids=network.private_subnet_ids,
                          account_id=account, region=config.aws.region, prevent_destroy=protect)
        node_role = NodeRole(self, "node-role", cluster_name=config.cluster.name)
        pools = [
            NodePool(self, f"pool-{pool.name}", name=f"{config.cluster.name}-{pool.name}", config=pool, cluster_name=cluster.name, node_role=node_role,
                     subnet_ids=network.private_subnet_ids, prevent_destroy=protect)
            for pool in config.node_pools
        ]
        # Build once, promote by digest: the environments that promote from this one read its images,
        # verified releases and models; this one reads those of the environment it promotes from.
        promotion_source, promotion_targets = promotion_peers(config)
        target_roles = [target.ci_role_arn("promote") for target in promotion_targets]
        registry = Registry(self, "registry", config=config.registry, account_id=account, prevent_destroy=protect, region=config.aws.region,
                            pull_roles=target_roles)
        # Only the promote role writes an environment's promotion records (none: nobody does).
        promoter = [config.ci_role_arn("promote")] if promotion_source else []
        only_writers = {prefix: promoter for prefix in layout.StoreLayout.of(config).prefixes(layout.ONLY_THE_PROMOTER_WRITES)}
        store = ArtifactStore(self, "artifact-store", config=config.artifact_store, account_id=account, prevent_destroy=protect,
                              region=config.aws.region, readers={role: promotion_source_prefixes(config) for role in target_roles},
                              **({"only_writers": only_writers} | (emulator.STORE_SETTINGS if config.aws.endpoint_url else {})))
        store_layout = layout.StoreLayout.of(config)
        identity = dict(oidc_provider_arn=cluster.oidc_provider.arn, oidc_issuer=cluster.oidc_issuer,
                        namespace=config.workloads.namespace, bucket_arn=store.arn, kms_key_arn=store.key.arn)
        # Who may read or set each secret's value; nobody else may, an administrator with secretsmanager:* included.
        admins = list(config.cluster.admin_principals)
        signing = Secret(self, "signing-key", name=config.signing_secret_name, kms_key_arn=store.key.arn, prevent_destroy=protect,
                         description="model-signing private key (PEM); set by `toolkit signing-key`",
                         readers=[config.workload_role_arn("training"), config.ci_role_arn("deploy")], writers=admins)
        feedback = Secret(self, "feedback-credentials", name=config.feedback_secret_name, kms_key_arn=store.key.arn,
                          description="prediction-id key and labellers' token hashes (JSON); set by `toolkit feedback-token`",
                          readers=[config.workload_role_arn("serving"), *admins], writers=admins)
        training = WorkloadRole(self, "training-role", name=config.workload_role_name("training"), service_account="training",
                                read_prefixes=store_layout.prefixes(layout.TRAINING_READS),
                                write_prefixes=store_layout.prefixes(layout.TRAINING_WRITES),
                                secret_arns=[signing.arn], **identity)
        serving = WorkloadRole(self, "serving-role", name=config.workload_role_name("serving"), service_account="serving",
                               read_prefixes=store_layout.prefixes(layout.SERVING_READS),
                               write_prefixes=store_layout.prefixes(layout.SERVING_WRITES), repository_arn=registry.arn,
                               secret_arns=[feedback.arn], **identity)

        ci = CiIdentity(self, "ci", config=config, account_id=account, registry_arn=registry.arn, bucket_arn=store.arn,
                        store_key_arn=store.key.arn, cluster_arn=cluster.cluster.arn, signing_secret_arn=signing.arn,
                        promotion_source=promotion_source)
        if config.cluster.access_entries:
            ClusterAccess(self, "cluster-access", cluster_name=cluster.name, deploy_role_arn=ci.deploy_role.arn,
                          namespace=config.workloads.namespace, admin_principals=list(config.cluster.admin_principals))

        monitoring = Monitoring(self, "monitoring", config=config, cluster_arn=cluster.cluster.arn,
                                subnet_ids=network.private_subnet_ids, prevent_destroy=protect) if config.monitoring.amp.enabled else None
        controller = None
        if monitoring is not None:  # the retrain controller consumes the retrain queue, and may do nothing else in AWS
            controller = WorkloadRole(
                self, "retrain-controller-role", name=config.workload_role_name("retrain-controller"), service_account="retrain-controller",
                oidc_provider_arn=cluster.oidc_provider.arn, oidc_issuer=cluster.oidc_issuer, namespace=config.workloads.namespace,
                statements=[{"Sid": "ConsumeRetrainQueue", "Effect": "Allow", "Action": CONSUME_ACTIONS, "Resource": monitoring.retrain.arn},
                            {"Sid": "DecryptRetrainQueue", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": monitoring.key.arn,
                             "Condition": {"StringEquals": {"kms:ViaService": f"sqs.{config.aws.region}.amazonaws.com"}}}])

        outputs = {
            Output.CLUSTER_NAME: cluster.name,
            Output.CLUSTER_ENDPOINT: cluster.cluster.endpoint,
            Output.CLUSTER_CA: cluster.cluster.certificate_authority.get(0).data,
            Output.OIDC_ISSUER: cluster.oidc_issuer,
            Output.REGISTRY_URL: registry.url,
            Output.BUCKET: store.name,
            Output.NODE_POOLS: [p.name for p in pools],
            Output.TRAINING_ROLE_ARN: training.arn,
            Output.SERVING_ROLE_ARN: serving.arn,
            Output.REGION: config.aws.region,
            Output.PLAN_ROLE_ARN: ci.plan_role.arn,
            Output.DEPLOY_ROLE_ARN: ci.deploy_role.arn,
            Output.SIGNING_KEY_SECRET: signing.name,
        }
        if ci.promote_role is not None:
            outputs[Output.PROMOTE_ROLE_ARN] = ci.promote_role.arn
        if monitoring is not None:
            outputs[Output.PROMETHEUS_ENDPOINT] = monitoring.query_endpoint
            outputs[Output.RETRAIN_QUEUE_URL] = monitoring.retrain.url
            outputs[Output.RETRAIN_CONTROLLER_ROLE_ARN] = controller.arn
            outputs[Output.ALERT_TOPIC_ARN] = monitoring.topic.arn
        for key, value in outputs.items():
            TerraformOutput(self, str(key), value=value)
        if config.aws.endpoint_url:
            Aspects.of(self).add(emulator.IgnoreInventedAttributes())

    def _provider(self, config: EnvironmentConfig) -> None:
        # Real AWS: refuse to touch any account but the configured one.
        target: dict = {"allowed_account_ids": [config.aws.account_id]}
        if config.aws.endpoint_url:
            target = emulator.provider_settings(config.aws.endpoint_url)
        AwsProvider(self, "aws", region=config.aws.region,
                    default_tags=[AwsProviderDefaultTags(tags={"environment": config.name, "managed-by": "toolkit"})],
                    **target)

    def _backend(self, config: EnvironmentConfig) -> None:
        S3Backend(self, bucket=config.state.bucket, key=config.state.key, region=config.aws.region, encrypt=True)
        # cdktf 0.21's S3Backend has no use_lockfile; DynamoDB locking is deprecated in Terraform 1.11.
        self.add_override("terraform.backend.s3.use_lockfile", True)
        if config.aws.endpoint_url:
            for key, value in emulator.backend_overrides(config.aws.endpoint_url).items():
                self.add_override(f"terraform.backend.s3.{key}", value)
