"""What hostnet is measured against in benchmarks/bridge.py and benchmarks/ports.py
(benchmarks/macvlan.py uses ``kernel``'s netlink and namespace helpers for its floor).

- ``kernel``: the raw floor (pyroute2 message classes over plain netlink sockets, one
  libnftables context) and the untimed scaffolding every method shares: throwaway
  namespaces, a bridge with hostnet's nftables tables in a throwaway host namespace.
- ``tools``: the same endpoint made by other programs, one process per step: `ip` and
  `nft`, the CNI reference plugins (bridge + host-local + portmap) and netavark. All of
  them run inside the throwaway host namespace, never in the machine's own.
"""
