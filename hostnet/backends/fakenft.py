"""A model of nftables for the fake backend.

It interprets the subset of libnftables' JSON commands that hostnet emits (add, create,
insert, delete, flush of tables, chains, rules, sets, maps and elements) with the kernel's
rules: deleting something missing is ENOENT, creating something present is EEXIST,
deleting a chain that still has rules or a set a rule refers to is EBUSY. A batch is
applied to a copy first, so a failing batch changes nothing, like a netlink transaction.

``list_table`` returns hostnet's normalised view of a table (also produced by the netlink
backend from ``nft -j list table``), so the contract suite can compare the two.
"""

from __future__ import annotations

import json
from typing import Any

from hostnet import errors


def _error(action: str, code: int, detail: str) -> errors.HostnetError:
    """The classes the netlink backend gives the same failures (see nft.translate)."""
    if code == 2:
        return errors.NotFoundError(f"{action}: {detail}")
    if code in (16, 17):
        return errors.ConflictError(f"{action}: {detail}")
    return errors.KernelError(action, code, detail)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class _Table:
    def __init__(self) -> None:
        self.chains: dict[str, dict[str, Any]] = {}
        self.sets: dict[str, dict[str, Any]] = {}  # maps too, with "map" in the spec


class FakeNftables:
    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], _Table] = {}
        self._handle = 0

    def table_names(self) -> tuple[str, ...]:
        return tuple(sorted(f"{f} {n}" for f, n in self.tables))

    def dump(self) -> dict[str, Any]:
        return {name: self.list_table(name) for name in self.table_names()}

    def list_table(self, table: str) -> dict[str, Any] | None:
        family, _, name = table.partition(" ")
        t = self.tables.get((family, name))
        if t is None:
            return None
        return {
            "chains": {
                cname: {"hook": c.get("hook"), "rules": len(c["rules"]), "policy": c["policy"]}
                for cname, c in sorted(t.chains.items())
            },
            "sets": {sname: sorted(s["elements"].keys()) for sname, s in sorted(t.sets.items())},
        }

    # -- interpreter -------------------------------------------------------------------

    def run(self, batch: dict[str, Any]) -> None:
        for command in batch.get("nftables", []):
            ((verb, body),) = command.items()
            if verb == "metainfo":
                continue
            ((kind, obj),) = body.items()
            getattr(self, f"_{verb}_{kind}")(obj)

    def _table(self, obj: dict[str, Any], key: str = "table") -> _Table:
        try:
            return self.tables[(obj["family"], obj[key])]
        except KeyError:
            raise _error(f"nft: table {obj['family']} {obj[key]}", 2, "no such table") from None

    def _add_table(self, obj: dict[str, Any]) -> None:
        self.tables.setdefault((obj["family"], obj["name"]), _Table())

    def _create_table(self, obj: dict[str, Any]) -> None:
        if (obj["family"], obj["name"]) in self.tables:
            raise _error(f"nft: create table {obj['name']}", 17, "exists")
        self._add_table(obj)

    def _delete_table(self, obj: dict[str, Any]) -> None:
        self._table(obj, "name")
        del self.tables[(obj["family"], obj["name"])]

    def _flush_table(self, obj: dict[str, Any]) -> None:
        t = self._table(obj, "name")
        for chain in t.chains.values():
            chain["rules"] = []
        for s in t.sets.values():
            s["elements"] = {}

    def _chain(self, obj: dict[str, Any], key: str = "chain") -> dict[str, Any]:
        t = self._table(obj)
        try:
            return t.chains[obj[key]]
        except KeyError:
            raise _error(f"nft: chain {obj[key]}", 2, "no such chain") from None

    def _add_chain(self, obj: dict[str, Any]) -> None:
        t = self._table(obj)
        chain: dict[str, Any] = {"hook": obj.get("hook"), "rules": [], "policy": obj.get("policy")}
        if obj.get("hook") and chain["policy"] is None:
            chain["policy"] = "accept"  # the kernel's default for a base chain
        t.chains.setdefault(obj["name"], chain)

    def _create_chain(self, obj: dict[str, Any]) -> None:
        if obj["name"] in self._table(obj).chains:
            raise _error(f"nft: create chain {obj['name']}", 17, "exists")
        self._add_chain(obj)

    def _referenced(self, t: _Table, needle: str) -> bool:
        return any(needle in _canon(r["expr"]) for c in t.chains.values() for r in c["rules"])

    def _delete_chain(self, obj: dict[str, Any]) -> None:
        t = self._table(obj)
        chain = self._chain(obj, "name")
        if chain["rules"] or self._referenced(t, _canon({"target": obj["name"]})[1:-1]):
            raise _error(f"nft: delete chain {obj['name']}", 16, "chain in use")
        del t.chains[obj["name"]]

    def _flush_chain(self, obj: dict[str, Any]) -> None:
        self._chain(obj, "name")["rules"] = []

    def _add_rule(self, obj: dict[str, Any], front: bool = False) -> None:
        chain = self._chain(obj)
        self._handle += 1
        rule = {"expr": obj["expr"], "comment": obj.get("comment"), "handle": self._handle}
        if front:
            chain["rules"].insert(0, rule)
        else:
            chain["rules"].append(rule)

    def _insert_rule(self, obj: dict[str, Any]) -> None:
        self._add_rule(obj, front=True)

    def _delete_rule(self, obj: dict[str, Any]) -> None:
        chain = self._chain(obj)
        for rule in chain["rules"]:
            if rule["handle"] == obj.get("handle"):
                chain["rules"].remove(rule)
                return
        raise _error("nft: delete rule", 2, f"no rule with handle {obj.get('handle')}")

    def _add_set(self, obj: dict[str, Any]) -> None:
        t = self._table(obj)
        t.sets.setdefault(obj["name"], {"spec": obj, "elements": {}})

    _add_map = _add_set

    def _create_set(self, obj: dict[str, Any]) -> None:
        if obj["name"] in self._table(obj).sets:
            raise _error(f"nft: create set {obj['name']}", 17, "exists")
        self._add_set(obj)

    _create_map = _create_set

    def _set(self, obj: dict[str, Any]) -> dict[str, Any]:
        t = self._table(obj)
        try:
            return t.sets[obj["name"]]
        except KeyError:
            raise _error(f"nft: set {obj['name']}", 2, "no such set or map") from None

    def _delete_set(self, obj: dict[str, Any]) -> None:
        t = self._table(obj)
        self._set(obj)
        if self._referenced(t, "@" + obj["name"]):
            raise _error(f"nft: delete set {obj['name']}", 16, "set in use")
        del t.sets[obj["name"]]

    _delete_map = _delete_set

    def _flush_set(self, obj: dict[str, Any]) -> None:
        self._set(obj)["elements"] = {}

    _flush_map = _flush_set

    @staticmethod
    def _elements(obj: dict[str, Any]) -> list[tuple[str, Any]]:
        out = []
        for elem in obj["elem"]:
            if isinstance(elem, list) and len(elem) == 2:  # map element: [key, value]
                out.append((_canon(elem[0]), elem[1]))
            else:
                out.append((_canon(elem), None))
        return out

    def _add_element(self, obj: dict[str, Any]) -> None:
        s = self._set(obj)
        for key, value in self._elements(obj):
            if key in s["elements"] and s["elements"][key] != value:
                raise _error("nft: add element", 17, f"{key} maps elsewhere")
            s["elements"][key] = value

    def _create_element(self, obj: dict[str, Any]) -> None:
        s = self._set(obj)
        for key, _ in self._elements(obj):
            if key in s["elements"]:
                raise _error("nft: create element", 17, f"{key} exists")
        self._add_element(obj)

    def _delete_element(self, obj: dict[str, Any]) -> None:
        s = self._set(obj)
        keys = [k for k, _ in self._elements(obj)]
        for key in keys:
            if key not in s["elements"]:
                raise _error("nft: delete element", 2, f"no element {key}")
        for key in keys:
            del s["elements"][key]
