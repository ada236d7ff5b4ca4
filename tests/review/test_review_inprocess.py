"""Review findings reproduced in-process: the route allowlist and the pool's origin map.

Regression tests for bugs an independent review found, all fixed since. The file:line references
in the docstrings point at the code as reviewed (commit 95f1e75), not at today's lines.
"""

from __future__ import annotations

import socket
import time

import pytest
import uvloop

from fastgw.app import Gateway, context_from_raw
from fastgw.config import from_dict
from fastgw.errors import GatewayError
from fastgw.providers.table import parse_base_url
from fastgw.stages.route import TargetAllowlist


def test_allowlist_path_prefix_is_compared_after_normalisation() -> None:
    """route.py:52: ``startswith(prefix + "/")`` on the raw path."""
    allow = TargetAllowlist(("https://api.together.xyz/v1",))
    for url in ("https://api.together.xyz/v1/../admin", "https://api.together.xyz/v1/%2e%2e/admin"):
        origin, path = parse_base_url(url)
        assert not allow.allows(origin, path), url


def test_target_origins_do_not_accumulate_forever() -> None:
    """pool.py:133-135 creates an OriginPool for every origin ever asked for and never drops one;
    with a wildcard entry (``*.groq.com`` or ``host:*``) a client chooses unboundedly many origins,
    and ``_sweep`` walks all of them every idle_timeout/2."""

    async def main() -> int:
        cfg = from_dict({"targets": {"allow": ["http://127.0.0.1:*"]},
                         "upstream": {"connect_timeout": "1s"}})
        gw = Gateway(cfg)
        await gw.start()
        # 300 distinct ports that refuse: bound (so nobody else has them) but not listening
        held = [socket.socket() for _ in range(300)]
        try:
            for sock in held:
                sock.bind(("127.0.0.1", 0))
            for sock in held:
                url = f"http://127.0.0.1:{sock.getsockname()[1]}"
                ctx = context_from_raw(b"GET", b"/v1/models", [(b"Helicone-Target-Url", url.encode())], b"", time.perf_counter_ns())
                with pytest.raises(GatewayError):
                    await gw.handle(ctx)
            assert gw.pool is not None
            return len(gw.pool.origins)
        finally:
            for sock in held:
                sock.close()
            await gw.close()

    origins = uvloop.run(main())
    assert origins < 300, f"{origins} OriginPools kept for origins with no connection at all"
