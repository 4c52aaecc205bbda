"""Server-side apply for the emulator, as the API server does it: field ownership per manager.

Each manager owns a set of field paths (recorded in `metadata.managedFields` as FieldsV1). An
Apply by manager M sets the fields of its configuration and owns them; fields M owned before and
no longer applies are removed from the object unless another manager owns them too; a field
another manager owns with a different value is a conflict (409) unless the apply is forced,
which moves the ownership to M. An Update (a controller writing, e.g. the HPA scaling) takes
ownership of the fields it changes, without conflicts.

Simplification, stated: lists are atomic (owned whole), as the API server treats lists marked
atomic; it treats keyed lists (containers by name) per element, which matters only when two
managers own different elements of one list, which the toolkit never does.
"""

from __future__ import annotations

import copy

# Identity, not content: never owned, never removed.
UNOWNED = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}
SYSTEM_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


class Conflict(Exception):
    def __init__(self, fields: list[tuple[str, tuple]]) -> None:
        super().__init__(fields)
        self.fields = fields  # (manager, path)


def leaf_paths(obj: dict, prefix: tuple = ()) -> dict[tuple, object]:
    """{path: value} of an applied configuration; dicts are walked, lists and scalars are leaves."""
    out = {}
    for key, value in obj.items():
        path = prefix + (key,)
        if path in UNOWNED or (prefix == ("metadata",) and key in SYSTEM_METADATA) or path == ("status",):
            continue
        if isinstance(value, dict) and value:
            out.update(leaf_paths(value, path))
        else:
            out[path] = value
    return out


def get(obj: dict, path: tuple, default=None):
    node = obj
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def put(obj: dict, path: tuple, value) -> None:
    node = obj
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = copy.deepcopy(value)


def remove(obj: dict, path: tuple) -> None:
    """Delete the field, and the objects it leaves empty."""
    parents = [obj]
    for part in path[:-1]:
        node = parents[-1].get(part)
        if not isinstance(node, dict):
            return
        parents.append(node)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):
        if parents[depth] == {}:
            parents[depth - 1].pop(path[depth - 1], None)


def fields_v1(paths: set[tuple]) -> dict:
    tree: dict = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return tree


def paths_of(fields: dict, prefix: tuple = ()) -> set[tuple]:
    paths = set()
    for key, child in fields.items():
        if not key.startswith("f:"):
            continue
        path = prefix + (key[2:],)
        paths |= paths_of(child, path) if child else {path}
    return paths


def owners_from(obj: dict | None) -> dict[str, tuple[str, set[tuple]]]:
    """{manager: (operation, paths)} from an object's managedFields."""
    entries = (obj or {}).get("metadata", {}).get("managedFields", []) or []
    return {e["manager"]: (e.get("operation", "Apply"), paths_of(e.get("fieldsV1", {}))) for e in entries}


def managed_fields(owners: dict[str, tuple[str, set[tuple]]], api_version: str, time: str) -> list[dict]:
    return [{"manager": manager, "operation": operation, "apiVersion": api_version, "time": time, "fieldsType": "FieldsV1",
             "fieldsV1": fields_v1(paths)} for manager, (operation, paths) in owners.items() if paths]


def apply(live: dict | None, config: dict, manager: str, force: bool) -> tuple[dict, dict]:
    """(merged object, owners) after `manager` applies `config` to `live`; Conflict when not forced."""
    owners = owners_from(live)
    merged = copy.deepcopy(live) if live is not None else {}
    applied = leaf_paths(config)
    conflicts = [(other, path) for other, (_, paths) in owners.items() if other != manager
                 for path in paths & set(applied) if get(merged, path) != applied[path]]
    if conflicts and not force:
        raise Conflict(conflicts)
    for other, path in conflicts:  # forced: the fields move to this manager
        operation, paths = owners[other]
        owners[other] = (operation, paths - {path})
    previously = owners.get(manager, ("Apply", set()))[1]
    others = set().union(*(paths for other, (_, paths) in owners.items() if other != manager)) if owners else set()
    for path in previously - set(applied):
        if path not in others:
            remove(merged, path)
    for path, value in applied.items():
        put(merged, path, value)
    for key in ("apiVersion", "kind"):
        merged[key] = config.get(key, merged.get(key))
    for key in ("name", "namespace"):  # identity
        if key in config.get("metadata", {}):
            merged.setdefault("metadata", {})[key] = config["metadata"][key]
    owners[manager] = ("Apply", set(applied))
    return merged, owners


def update(live: dict, new: dict, manager: str) -> dict:
    """Owners after `manager` writes `new` over `live` with an Update: it owns what it changed."""
    owners = owners_from(live)
    before, after = leaf_paths(live), leaf_paths(new)
    changed = {path for path in set(before) | set(after) if before.get(path) != after.get(path)}
    for other, (operation, paths) in list(owners.items()):
        owners[other] = (operation, paths - changed)
    operation, paths = owners.get(manager, ("Update", set()))
    owners[manager] = ("Update", paths | (changed & set(after)))
    return owners
