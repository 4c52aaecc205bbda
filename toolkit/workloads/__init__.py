"""Workloads on an environment's cluster: manifests, apply/rollout/rollback, EKS auth, local Docker runtime."""
