"""The one place that decides where an environment's workloads run (workloads.runtime).

A kubeconfig or context names a cluster outright; an emulated environment (its EKS has no API
server) runs on the local Docker engine; any other runs on its EKS cluster, reached through the
stack outputs."""

from __future__ import annotations

from toolkit.context import Context
from toolkit.workloads.runtime import DockerRuntime, KubernetesRuntime, Runtime


def open_runtime(ctx: Context, kubeconfig: str | None = None, context: str | None = None) -> Runtime:
    from toolkit.local.services import ensure_emulated_services
    from toolkit.workloads.kube import Kube
    from toolkit.workloads.target import outputs_for, outputs_from_cluster

    def prepare(on_line):  # an emulated environment's store and registry are local services, whatever runs it
        ensure_emulated_services(ctx, on_line=on_line)

    if kubeconfig or context:
        from toolkit.workloads.eks_auth import kubeconfig_api_client

        kube = Kube(kubeconfig_api_client(kubeconfig, context))
        return KubernetesRuntime(ctx, kube, outputs_from_cluster(kube, ctx), prepare)
    if ctx.emulated:
        return DockerRuntime(ctx, prepare)
    from toolkit.workloads.eks_auth import cluster_access, eks_api_client

    outputs = outputs_for(ctx)
    return KubernetesRuntime(ctx, Kube(eks_api_client(ctx.config, *cluster_access(ctx.config, outputs))), outputs, prepare)
