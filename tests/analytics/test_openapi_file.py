"""The OpenAPI file is valid 3.1, and it describes every route the admin server answers."""

from __future__ import annotations

import re

import jsonschema
import pytest

from fastgw.analytics.admin_server import AdminServer
from fastgw.config import AdminConfig
from tests.analytics.openapi_check import check_response, spec


def test_the_file_is_valid_openapi_31() -> None:
    assert spec()["openapi"] == "3.1.0"


def test_every_api_route_is_documented() -> None:
    server = AdminServer(AdminConfig(port=0), "none://")
    try:
        routes = {p.pattern for p, _ in server.routes}
    finally:
        server.httpd.server_close()
    documented = {"^" + re.sub(r"\{[^}]+\}", "([^/]+)", path) + "$" for path in spec()["paths"]}
    assert routes <= documented
    assert {"/metrics", "/", "/static/{file}"} <= set(spec()["paths"])


def test_the_checker_rejects_a_wrong_shape() -> None:
    """The validation the other tests rely on can fail."""
    with pytest.raises(jsonschema.ValidationError):
        check_response("getSummary", 200, {"requests": "many"})
    with pytest.raises(jsonschema.ValidationError):
        check_response("listRequests", 200, {"items": [{"request_id": "not-a-uuid"}], "next_cursor": None})
