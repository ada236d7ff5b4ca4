"""The one SSLContext every upstream connection of a worker shares."""

from __future__ import annotations

import ssl

from fastgw.config import UpstreamConfig


def make_ssl_context(config: UpstreamConfig) -> ssl.SSLContext:
    """Verification on by default, against the system store, SSL_CERT_FILE, or ``ca_bundle``."""
    ctx = ssl.create_default_context(cafile=config.ca_bundle)
    if not config.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])  # we speak HTTP/1.1 only; never let a server pick h2
    return ctx
