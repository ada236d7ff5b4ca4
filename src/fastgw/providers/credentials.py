"""The one place an upstream attempt's provider credential is chosen.

There are three sources, tried in this order:
1. A gateway key's granted credential for this provider (``ctx.principal.credentials``, resolved
   from config ``credentials:`` by name), so clients holding gateway keys never see provider keys.
2. The provider's configured ``api_key``.
3. The client's own credential (``Authorization: Bearer ...`` or ``x-api-key``), unless it is a
   gateway key: an ``fgw-`` key is the gateway's, and is never sent upstream.

A request authenticated by a gateway key that finds none of them is refused (403) rather than sent
without a credential, which would only come back as the provider's own, more confusing, 401.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastgw.errors import Forbidden
from fastgw.keys.token import PREFIX_BYTES

if TYPE_CHECKING:
    from fastgw.context import RequestContext
    from fastgw.providers.table import Provider


def credential_for(ctx: RequestContext, provider: Provider) -> str | None:
    """The API key this attempt sends to ``provider``; None: the client sent none (send none)."""
    if provider.format.gateway_authenticates:  # Bedrock: signed with the gateway's own AWS keys
        return None
    principal = ctx.principal
    if principal is not None:
        granted = principal.credentials.get(provider.name)
        if granted is not None:
            return granted
    if provider.api_key:
        return provider.api_key
    own = client_credential(ctx)
    if own is None and principal is not None:
        raise Forbidden(
            f"gateway key {principal.key_id} has no credential for provider {provider.name!r}: grant one "
            f"(fastgw keys create --credential NAME) or configure providers.{provider.name}.api_key"
        )
    return own


def client_credential(ctx: RequestContext) -> str | None:
    """The provider credential the client sent itself, never a gateway key; None when there is none."""
    h = ctx.headers
    auth = h.authorization
    if auth is not None:
        scheme, _, token = auth.partition(b" ")
        token = token.strip() if scheme.lower() == b"bearer" else auth
        if token and not token.startswith(PREFIX_BYTES):
            return token.decode("latin-1")
    if h.api_key is not None and not h.api_key.startswith(PREFIX_BYTES):
        return h.api_key.decode("latin-1")
    return None


def credential_line(ctx: RequestContext, provider: Provider) -> bytes:
    """The header line that carries ``credential_for``'s choice in the provider's scheme.

    A provider configured with ``api_key`` keeps its prepared line unless the gateway key was
    granted a credential of its own for that provider.
    """
    principal = ctx.principal
    granted = principal.credentials.get(provider.name) if principal is not None else None
    if granted is None and provider.auth_line is not None:
        return provider.auth_line
    credential = credential_for(ctx, provider)
    return provider.format.auth_line(credential) if credential else b""
