"""Where named namespaces live. Kept apart from the netlink backend so that importing
it does not load pyroute2."""

from __future__ import annotations

import os

NETNS_RUN_DIR = "/run/netns"


def ns_path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)
