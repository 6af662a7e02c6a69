"""Where named namespaces live. Kept apart from the netlink backend so that importing
it does not load pyroute2."""

from __future__ import annotations

NETNS_RUN_DIR = "/run/netns"


def ns_path(name: str) -> str:
    # not os.path.join: a quarter of the cost, called once per kernel call, and never
    # leaves /run/netns for an absolute name (names are validated before they get here)
    return NETNS_RUN_DIR + "/" + name
