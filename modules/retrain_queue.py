"""Alert-driven retraining in the cloud: the alert manager's `retrain` route publishes to a topic
of its own, delivered into an SQS queue (with a dead-letter queue) that the retrain controller
consumes (toolkit/monitoring/retrain_controller.py, a Deployment in the cluster, IRSA role
`<cluster>-retrain-controller`, allowed only to consume this queue).

Everything is encrypted with the monitoring key; only the AMP workspace may publish to the topic,
only the topic may send to the queue, and only over TLS.
"""

from __future__ import annotations

from cdktf import Fn
from cdktf_cdktf_provider_aws.sns_topic import SnsTopic
from cdktf_cdktf_provider_aws.sns_topic_policy import SnsTopicPolicy
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription
from cdktf_cdktf_provider_aws.sqs_queue import SqsQueue
from cdktf_cdktf_provider_aws.sqs_queue_policy import SqsQueuePolicy
from constructs import Construct

CONSUME_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
                   "sqs:GetQueueUrl"]
MAX_RECEIVES = 5  # a message the controller failed on this often goes to the dead-letter queue


class RetrainQueue(Construct):
    """Args:
        name: the cluster's name (the topic and queues are named after it).
        kms_key_arn: the monitoring key.
        account_id / workspace_arn: the AMP workspace that alone may publish.
    """

    def __init__(self, scope: Construct, id: str, *, name: str, kms_key_arn: str, account_id: str, workspace_arn: str) -> None:
        super().__init__(scope, id)
        self.topic = SnsTopic(self, "topic", name=f"{name}-retrain", kms_master_key_id=kms_key_arn)
        SnsTopicPolicy(self, "topic-policy", arn=self.topic.arn, policy=Fn.jsonencode({"Version": "2012-10-17", "Statement": [{
            "Sid": "AmpPublishes", "Effect": "Allow", "Principal": {"Service": "aps.amazonaws.com"},
            "Action": ["sns:Publish", "sns:GetTopicAttributes"], "Resource": self.topic.arn,
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}, "ArnEquals": {"aws:SourceArn": workspace_arn}}}]}))
        self.dead_letters = SqsQueue(self, "dead-letters", name=f"{name}-retrain-dead-letters", kms_master_key_id=kms_key_arn,
                                     message_retention_seconds=14 * 24 * 3600)
        self.queue = SqsQueue(self, "queue", name=f"{name}-retrain", kms_master_key_id=kms_key_arn, visibility_timeout_seconds=300,
                              receive_wait_time_seconds=20, message_retention_seconds=4 * 24 * 3600,
                              redrive_policy=Fn.jsonencode({"deadLetterTargetArn": self.dead_letters.arn, "maxReceiveCount": MAX_RECEIVES}))
        SqsQueuePolicy(self, "queue-policy", queue_url=self.queue.url, policy=Fn.jsonencode({"Version": "2012-10-17", "Statement": [
            {"Sid": "TopicSends", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
             "Resource": self.queue.arn, "Condition": {"ArnEquals": {"aws:SourceArn": self.topic.arn}}},
            {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": self.queue.arn,
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ]}))
        SnsTopicSubscription(self, "subscription", topic_arn=self.topic.arn, protocol="sqs", endpoint=self.queue.arn)
        self.arn, self.url = self.queue.arn, self.queue.url
