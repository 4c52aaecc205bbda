"""A CustomResourceDefinition's schema as the tests validate against it: closed, so a field the CRD
does not declare fails (the API server would prune it silently)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml


def closed_crd_schema(crd_file: Path, version: str) -> dict:
    """`version`'s openAPIV3Schema with additionalProperties: false wherever an object declares its properties."""
    crd = yaml.safe_load(crd_file.read_text())
    schema = copy.deepcopy(next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"])

    def close(node):
        if isinstance(node, dict):
            if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)
    close(schema)
    return schema
