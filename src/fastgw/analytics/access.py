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


def host_allowed(host_header: str | None) -> bool:
    """Without a key, only requests addressed to a loopback name: a web page on another name that
    rebinds its DNS to 127.0.0.1 (DNS rebinding) would otherwise read the log through the browser."""
    if not host_header:
        return False
    name = host_header.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    else:
        name = name.rpartition(":")[0] if name.count(":") == 1 else name
    return is_loopback(name)  # localhost or a loopback address, never a name that merely starts so


def key_required(host: str, key: str) -> bool:
    """True when requests must carry the key. Raises ValueError for the one refused shape:
    listening beyond loopback without a key, where anyone who can reach the port could read
    every prompt in the log."""
    if not is_loopback(host) and not key:
        raise ValueError(f"the admin server would listen on {host} without admin.key; "
                         "set admin.key or bind it to 127.0.0.1")
    return bool(key)
