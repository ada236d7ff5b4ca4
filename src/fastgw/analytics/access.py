"""Who may use the admin server: the policy alone, light enough for config validation to import."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve beyond this machine


def key_required(host: str, key: str) -> bool:
    """True when requests must carry the key. Raises ValueError for the one refused shape:
    listening beyond loopback without a key, where anyone who can reach the port could read
    every prompt in the log."""
    if not is_loopback(host) and not key:
        raise ValueError(f"the admin server would listen on {host} without admin.key; "
                         "set admin.key or bind it to 127.0.0.1")
    return bool(key)
