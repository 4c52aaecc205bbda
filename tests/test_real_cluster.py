"""Deploy, smoke-test and roll back on a real Kubernetes cluster (marker `real_cluster`).

Skipped unless TOOLKIT_TEST_KUBECONFIG names a kubeconfig: never $KUBECONFIG, so `make test`
cannot touch a cluster by accident. TOOLKIT_TEST_IMAGE must be a serving image pinned by digest
that the cluster can pull; TOOLKIT_TEST_ENV picks the environment's settings (default dev) and a
node must carry its system pool's labels. Each run works in a namespace of its own and deletes it.
With TOOLKIT_TEST_TRAINING_IMAGE (the training image, by digest) it also runs `train --remote`'s
Job in a namespace nothing was deployed to: the dataset must be in TOOLKIT_TEST_BUCKET (default:
the environment's artifact store) and the cluster's nodes able to read it.

    TOOLKIT_TEST_KUBECONFIG=~/.kube/kind TOOLKIT_TEST_IMAGE=registry/serving@sha256:… \\
        .venv/bin/pytest -m real_cluster tests/test_real_cluster.py
"""

from __future__ import annotations

import os
import re
import uuid

import pytest

from conftest import PATHS
from toolkit.config import load_environment
from toolkit.context import Context
from toolkit.errors import RolloutError
from toolkit.images.release import Release
from toolkit.workloads import rollout
from toolkit.workloads.eks_auth import kubeconfig_api_client
from toolkit.workloads.kube import Kube
from toolkit.workloads.manifests import SERVING
from toolkit.workloads.smoke import smoke_test_service

KUBECONFIG = os.environ.get("TOOLKIT_TEST_KUBECONFIG")
IMAGE = os.environ.get("TOOLKIT_TEST_IMAGE")
TRAINING_IMAGE = os.environ.get("TOOLKIT_TEST_TRAINING_IMAGE")
OUTPUTS = {"serving_role_arn": "", "training_role_arn": "", "bucket": ""}  # the serving image needs no AWS access

pytestmark = [
    pytest.mark.real_cluster,
    pytest.mark.skipif(not (KUBECONFIG and IMAGE), reason="needs TOOLKIT_TEST_KUBECONFIG and TOOLKIT_TEST_IMAGE (a real cluster)"),
]


@pytest.fixture
def cluster():
    """(Kube, config) for a throwaway namespace, without GPU pools (no add-on in kube-system), under a
    name of its own: prune only touches objects labelled with that name, never the real environment's."""
    config = load_environment(os.environ.get("TOOLKIT_TEST_ENV", "dev"))
    scratch = f"toolkit-test-{uuid.uuid4().hex[:8]}"
    config = config.model_copy(update={
        "name": scratch, "node_pools": [p for p in config.node_pools if not p.gpu],
        "workloads": config.workloads.model_copy(update={"namespace": scratch, "rollout_timeout_seconds": 180}),
        # no monitoring objects for a throwaway name (and no prometheus-operator CRDs needed)
        "monitoring": config.monitoring.model_copy(update={"prometheus_operator": False, "grafana_dashboard": False})})
    kube = Kube(kubeconfig_api_client(KUBECONFIG, os.environ.get("TOOLKIT_TEST_CONTEXT")))
    try:
        yield kube, config
    finally:
        kube.delete("Namespace", config.workloads.namespace)


def test_deploy_smoke_and_a_failed_rollout_rolled_back(cluster):
    kube, config = cluster
    namespace = config.workloads.namespace
    good = Release(IMAGE, "real-cluster-good")
    rollout.deploy(kube, config, OUTPUTS, good, timeout=180, poll=2)
    answer = smoke_test_service(kube, Context(config, PATHS))
    assert set(answer["prediction"]["probabilities"]) == {"0", "1"}

    # A digest that does not exist in the repository: ImagePullBackOff, then a rollback.
    missing = Release(IMAGE.split("@")[0] + "@sha256:" + "0" * 64, "real-cluster-missing")
    with pytest.raises(RolloutError) as failure:
        rollout.deploy(kube, config, OUTPUTS, missing, timeout=60, poll=2)
    assert re.search("ErrImagePull|ImagePullBackOff", failure.value.reason) and "rolled back" in str(failure.value)
    live = kube.get("Deployment", SERVING, namespace)
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
    assert smoke_test_service(kube, Context(config, PATHS))["prediction"]


@pytest.mark.skipif(not TRAINING_IMAGE, reason="needs TOOLKIT_TEST_TRAINING_IMAGE")
def test_train_remote_in_a_namespace_nothing_was_deployed_to(cluster):
    """`train --remote` brings its namespace and ServiceAccount (a real server refuses a Job in a
    namespace that does not exist), streams the pod's log and reports the outcome."""
    import yaml

    from toolkit.workloads import jobs

    kube, config = cluster
    assert kube.get("Namespace", config.workloads.namespace) is None
    environment_yaml = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    outputs = {**OUTPUTS, "bucket": os.environ.get("TOOLKIT_TEST_BUCKET", config.artifact_store.bucket)}
    lines = []
    result = jobs.run_training_job(kube, config, outputs, Release(TRAINING_IMAGE, "training"), environment_yaml,
                                   timeout=900, on_log=lines.append, poll=2)
    assert result["outcome"] == "succeeded", lines[-20:]
    assert kube.get("ServiceAccount", "training", config.workloads.namespace) is not None
