"""Validation of names before they reach the kernel or a path.

Namespace names become files under /run/netns; interface names go into netlink messages
where the kernel allows at most 15 bytes (IFNAMSIZ - 1). Both are checked here, once,
so that no layer below sees a name that could escape a directory or be truncated.
"""

from __future__ import annotations

import re

from hostnet.errors import InvalidName

IFNAMSIZ = 16
MAX_IFNAME = IFNAMSIZ - 1
MAX_NSNAME = 64

# Namespace names are file names under /run/netns and must also be safe in a shell-free
# argv and in the store: ASCII letters, digits, '.', '_' and '-', not starting with '.'
# or '-' (a leading '-' reads as an option to `ip netns`).
_NS_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# The kernel accepts almost any byte in an interface name except '/', ':' and
# whitespace; hostnet keeps to the portable subset so names survive every tool.
_IF_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*")
_NET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _common(kind: str, name: object, limit: int, pattern: re.Pattern[str]) -> str:
    if not isinstance(name, str):
        raise InvalidName(kind, name, f"must be a string, not {type(name).__name__}")
    if not name:
        raise InvalidName(kind, name, "must not be empty")
    if not name.isascii():
        raise InvalidName(kind, name, "must be ASCII")
    if len(name.encode()) > limit:
        raise InvalidName(kind, name, f"is {len(name.encode())} bytes, the limit is {limit}")
    if name == ".":
        raise InvalidName(kind, name, "'.' is not a name")
    if ".." in name:
        raise InvalidName(kind, name, "must not contain '..'")
    if "/" in name:
        raise InvalidName(kind, name, "must not contain '/'")
    if any(c.isspace() for c in name):
        raise InvalidName(kind, name, "must not contain whitespace")
    if not pattern.fullmatch(name):
        raise InvalidName(
            kind, name, "may contain only letters, digits and . _ - (not first: . or -)"
        )
    return name


def check_namespace_name(name: object) -> str:
    """Return ``name`` if it is a valid namespace name, else raise InvalidName.

    >>> check_namespace_name("app1")
    'app1'
    """
    return _common("namespace", name, MAX_NSNAME, _NS_RE)


def check_ifname(name: object) -> str:
    """Return ``name`` if it is a valid interface name (at most 15 bytes; not "all" or
    "default", which name every interface's settings in /proc/sys/net: the kernel
    refuses them, EINVAL)."""
    _common("interface", name, MAX_IFNAME, _IF_RE)
    if name in ("all", "default"):
        raise InvalidName("interface", name, "is reserved (/proc/sys/net/*/conf/" + name + ")")
    assert isinstance(name, str)
    return name


def check_network_name(name: object, kind: str = "network") -> str:
    """Return ``name`` if it is a valid network name (or, with ``kind``, a name of that
    kind spelt the same way, such as a host-network workload's)."""
    return _common(kind, name, MAX_NSNAME, _NET_RE)
