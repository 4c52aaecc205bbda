"""VPC across the configured availability zones: public and private subnets, NAT, EKS subnet tags."""

from __future__ import annotations

import ipaddress

from cdktf import Fn
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.default_security_group import DefaultSecurityGroup
from cdktf_cdktf_provider_aws.eip import Eip
from cdktf_cdktf_provider_aws.flow_log import FlowLog
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.internet_gateway import InternetGateway
from cdktf_cdktf_provider_aws.nat_gateway import NatGateway
from cdktf_cdktf_provider_aws.route_table import RouteTable, RouteTableRoute
from cdktf_cdktf_provider_aws.route_table_association import RouteTableAssociation
from cdktf_cdktf_provider_aws.subnet import Subnet
from cdktf_cdktf_provider_aws.vpc import Vpc
from constructs import Construct

from modules.iam import assume_role_policy
from modules.kms import EncryptionKey
from toolkit.config import NetworkConfig


class Network(Construct):
    """Public subnets (load balancers, NAT) and private subnets (nodes) in every AZ.

    Args:
        config: CIDR, AZs and the NAT strategy (`single` shared or `one_per_az`).
        cluster_name: tags subnets `kubernetes.io/cluster/<name>` so EKS finds them.
        account_id / region: for the flow-log KMS key.
        log_retention_days: CloudWatch retention of VPC flow logs.
    """

    def __init__(
        self, scope: Construct, id: str, *, config: NetworkConfig, cluster_name: str, account_id: str, region: str,
        log_retention_days: int = 365,
    ) -> None:
        super().__init__(scope, id)
        self.vpc = Vpc(self, "vpc", cidr_block=config.vpc_cidr, enable_dns_hostnames=True, enable_dns_support=True,
                       tags={"Name": f"{cluster_name}-vpc"})
        # The default security group allows all traffic between members: empty it.
        DefaultSecurityGroup(self, "default-sg", vpc_id=self.vpc.id)
        igw = InternetGateway(self, "igw", vpc_id=self.vpc.id)
        blocks = list(ipaddress.ip_network(config.vpc_cidr).subnets(new_prefix=ipaddress.ip_network(config.vpc_cidr).prefixlen + 4))
        cluster_tag = {f"kubernetes.io/cluster/{cluster_name}": "shared"}
        public_rt = RouteTable(self, "public-rt", vpc_id=self.vpc.id,
                               route=[RouteTableRoute(cidr_block="0.0.0.0/0", gateway_id=igw.id)])
        self.public_subnet_ids: list[str] = []
        self.private_subnet_ids: list[str] = []
        nats: list[NatGateway] = []
        for i, az in enumerate(config.availability_zones):
            public = Subnet(self, f"public-{az}", vpc_id=self.vpc.id, availability_zone=az, cidr_block=str(blocks[i]),
                            map_public_ip_on_launch=False,
                            tags={"Name": f"{cluster_name}-public-{az}", "kubernetes.io/role/elb": "1", **cluster_tag})
            RouteTableAssociation(self, f"public-rta-{az}", subnet_id=public.id, route_table_id=public_rt.id)
            self.public_subnet_ids.append(public.id)
            if config.nat_gateways == "one_per_az" or i == 0:
                eip = Eip(self, f"nat-eip-{az}", domain="vpc")
                nats.append(NatGateway(self, f"nat-{az}", allocation_id=eip.id, subnet_id=public.id, depends_on=[igw]))
            private = Subnet(self, f"private-{az}", vpc_id=self.vpc.id, availability_zone=az,
                             cidr_block=str(blocks[len(config.availability_zones) + i]),
                             tags={"Name": f"{cluster_name}-private-{az}", "kubernetes.io/role/internal-elb": "1", **cluster_tag})
            private_rt = RouteTable(self, f"private-rt-{az}", vpc_id=self.vpc.id,
                                    route=[RouteTableRoute(cidr_block="0.0.0.0/0", nat_gateway_id=nats[-1].id)])
            RouteTableAssociation(self, f"private-rta-{az}", subnet_id=private.id, route_table_id=private_rt.id)
            self.private_subnet_ids.append(private.id)
        self.nat_gateway_count = len(nats)
        self._flow_logs(cluster_name, account_id, region, log_retention_days)

    def _flow_logs(self, cluster_name: str, account_id: str, region: str, retention_days: int) -> None:
        """Every accepted and rejected flow to an encrypted CloudWatch log group."""
        key = EncryptionKey(self, "flow-logs-key", alias=f"{cluster_name}-flow-logs", account_id=account_id,
                            description=f"VPC flow logs of {cluster_name}", service_principals=[f"logs.{region}.amazonaws.com"])
        group = CloudwatchLogGroup(self, "flow-logs", name=f"/aws/vpc/{cluster_name}/flow-logs",
                                   retention_in_days=retention_days, kms_key_id=key.arn)
        role = IamRole(self, "flow-logs-role", name=f"{cluster_name}-flow-logs",
                       assume_role_policy=assume_role_policy("vpc-flow-logs.amazonaws.com"))
        IamRolePolicy(self, "flow-logs-policy", role=role.id, policy=Fn.jsonencode({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Resource": [group.arn, f"{group.arn}:*"],
                           "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]}],
        }))
        FlowLog(self, "flow-log", vpc_id=self.vpc.id, traffic_type="ALL", log_destination_type="cloud-watch-logs",
                log_destination=group.arn, iam_role_arn=role.arn)
