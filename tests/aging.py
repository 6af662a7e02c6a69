"""Make a host's firewall look as an older hostnet made it (tests of gc's upgrade)."""

from __future__ import annotations

import json

import attrs

from hostnet.controller import Controller
from hostnet.drivers import bridge_firewall as fw
from hostnet.ops import NftBatch, plan_from_json, plan_to_json


def _without(batch: NftBatch, drop: str) -> NftBatch:
    commands = json.loads(batch.commands)["nftables"]
    kept = [c for c in commands if drop not in json.dumps(c)]
    assert len(kept) < len(commands), f"no command of the batch mentions {drop!r}"
    return attrs.evolve(batch, commands=fw.batch(kept))


def age_firewall(
    ctl: Controller, *, base_drop: str = "", network: str = "", drop: str = ""
) -> None:
    """Record and build ``ctl``'s host firewall as if an older hostnet had made it: the
    shared batch without the commands whose JSON mentions ``base_drop``, and network
    ``network``'s without those mentioning ``drop``. The kernel's tables are made again
    from those records, as the older version left them."""
    host = ctl.host_ns
    with ctl.store.transaction() as tx:
        shared = tx.shared(ctl.host_key, "nft:bridge")
        assert shared is not None
        base = [op for op in plan_from_json(shared["applied"]) if isinstance(op, NftBatch)]
        if base_drop:
            base = [_without(base[0], base_drop)]
            tx.set_shared_applied(ctl.host_key, "nft:bridge", plan_to_json(tuple(base)))
        batches = list(base)
        ids = set()
        for net in tx.networks(ctl.host_key):
            if net["driver"] != "bridge" or net["state"] != "active":
                continue
            ids.add(net["id"])
            plan = plan_from_json(net["applied"])
            if net["name"] == network:
                plan = tuple(
                    _without(op, drop) if isinstance(op, NftBatch) and op.ns == host else op
                    for op in plan
                )
                tx.set_network_applied(net["id"], plan_to_json(plan))
            batches += [op for op in plan if isinstance(op, NftBatch) and op.ns == host]
        for ep in tx.endpoints():
            if ep["network"] in ids and ep["state"] == "active":
                batches += [
                    op
                    for op in plan_from_json(ep["applied"])
                    if isinstance(op, NftBatch) and op.ns == host
                ]
    drop_tables = [
        {"delete": {"table": {"family": family, "name": fw.TABLE}}}
        for family in ("inet", "bridge")
    ]
    ctl.backend.apply(NftBatch(ns=host, commands=fw.batch(drop_tables), undo=""))
    for batch in batches:
        ctl.backend.apply(attrs.evolve(batch, undo=""))
