"""Terraform lifecycle settings shared by the constructs."""

from __future__ import annotations

from cdktf import TerraformResourceLifecycle


def protect(prevent_destroy: bool) -> TerraformResourceLifecycle | None:
    """`prevent_destroy = true` for resources that must never be destroyed by accident (prod)."""
    return TerraformResourceLifecycle(prevent_destroy=True) if prevent_destroy else None
