"""Every prefix the platform writes in an environment's artifact store, named once.

The code that writes a prefix and the IAM policy that allows it both take it from here
(`StoreLayout.prefix`, and the grants below for infra/), so the two cannot drift apart. A new
kind of record is a new `Area`, placed in the grants of whoever reads or writes it.

    <models_prefix><env>/<version>/        signed model artifacts (train --upload, push, promote)
    <datasets_prefix><name>                training data (train --remote; shared by a bucket's environments)
    predictions/<env>/<date>/…jsonl.gz     the server's prediction log (serve/shipping.py)
    feedback/<env>/<date>/…jsonl.gz        the ground truth clients send back (serve/shipping.py)
    retrain/<env>/<stamp>/                 a retraining Job's feedback snapshot and challenger (loop/remote.py)
    decisions/<env>/<stamp>.json           the champion/challenger gate's records (loop/retrain.py)
    releases/<env>/<digest>.json           digests deployed and smoke-tested here (delivery/promotion.py)
    promotions/<env>/<digest>.json         digests promoted here from promotion_from (delivery/promotion.py)

Plain strings only: infra/ imports this module, and it imports nothing that talks to AWS.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from toolkit.config import EnvironmentConfig


class Area(enum.StrEnum):
    MODELS = "models"
    DATASETS = "datasets"
    PREDICTIONS = "predictions"
    FEEDBACK = "feedback"
    RETRAIN = "retrain"
    DECISIONS = "decisions"
    RELEASES = "releases"
    PROMOTIONS = "promotions"
    SWEEPS = "sweeps"  # sweeps/<env>/<sweep id>/<index>.json: one result per (setting, fold)


# Who reads and writes what (the workload roles in infra/stack.py, the CI roles in modules/ci_identity.py).
SERVER_LOGS = (Area.PREDICTIONS, Area.FEEDBACK)
SERVING_READS, SERVING_WRITES = (Area.MODELS,), SERVER_LOGS
TRAINING_READS = (Area.DATASETS, Area.MODELS, *SERVER_LOGS, Area.RETRAIN, Area.SWEEPS)  # a retraining Job reads the feedback
TRAINING_WRITES = (Area.MODELS, Area.RETRAIN, Area.SWEEPS)  # a sweep's pods write their results
PROMOTION_SOURCE_READS = (Area.MODELS, Area.RELEASES)  # what `toolkit promote --from ENV` reads in ENV
# CI: the deploy role trains, pushes, deploys and retrains; it reads the promotion records it is held
# to and cannot write them: only the promote role writes an environment's promotions (and the model
# it copies), and the bucket policy refuses every other writer there (modules/artifact_store.py).
CI_DEPLOY_READS = tuple(Area)
CI_DEPLOY_WRITES = tuple(area for area in Area if area is not Area.PROMOTIONS)
PROMOTE_READS_WRITES = (Area.MODELS, Area.PROMOTIONS)
ONLY_THE_PROMOTER_WRITES = (Area.PROMOTIONS,)


@dataclass(frozen=True)
class StoreLayout:
    """One environment's view of its bucket: keys (`prefix`) and s3:// URLs (`url`, `model`, …)."""

    bucket: str
    env: str
    models_prefix: str = "models/"
    datasets_prefix: str = "datasets/"

    @classmethod
    def of(cls, config: EnvironmentConfig, bucket: str | None = None) -> StoreLayout:
        """`bucket`: the name the stack created, when it differs from the environment file's."""
        store = config.artifact_store
        return cls(bucket or store.bucket, config.name, store.models_prefix, store.datasets_prefix)

    def prefix(self, area: Area) -> str:
        """The key prefix of `area` (ends with '/')."""
        if area is Area.MODELS:
            return f"{self.models_prefix}{self.env}/"
        if area is Area.DATASETS:
            return self.datasets_prefix
        return f"{area.value}/{self.env}/"

    def prefixes(self, areas) -> list[str]:
        return [self.prefix(area) for area in areas]

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def area_url(self, area: Area) -> str:
        return self.url(self.prefix(area))

    def model(self, version: str) -> str:
        """Where a model version's artifact lives (…/<version>/)."""
        return self.url(f"{self.prefix(Area.MODELS)}{version}/")

    def dataset(self, name: str) -> str:
        return self.url(self.prefix(Area.DATASETS) + name)

    def record(self, area: Area, name: str) -> str:
        """A JSON record of `area` (a decision, a verified release, a promotion)."""
        return self.url(f"{self.prefix(area)}{name}.json")

    def object_arns(self, areas, bucket_arn: str | None = None) -> list[str]:
        """IAM resources for the objects under `areas` (`bucket_arn`: a Terraform reference, default this bucket's)."""
        base = bucket_arn or f"arn:aws:s3:::{self.bucket}"
        return [f"{base}/{prefix}*" for prefix in self.prefixes(areas)]
