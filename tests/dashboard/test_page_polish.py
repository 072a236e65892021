"""Page polish (issue 31): the page's favicon is served (no 404 in the console), and "Sign out" is offered only when
a token is configured (with no token nobody signs in). Against the real server and real Redis."""

from __future__ import annotations

import httpx
import pytest

from tests.dashboard_helpers import AUTH, LiveServer, dashboard_settings
from tests.redis_helpers import free_port, unique_prefix

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", params=["token", "open"])
def server(request, tiny_checkpoint, redis_url, tmp_path_factory):
    with unique_prefix(redis_url, "test-polish") as prefix:
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path_factory.mktemp("polish"),
                                      free_port())
        if request.param == "open":
            settings.dashboard.token = ""
        with LiveServer(settings) as live:
            yield request.param, live


def test_sign_out_only_when_a_token_is_set(server):
    mode, live = server
    page = httpx.get(f"{live.url}/", headers=AUTH)
    assert page.status_code == 200
    assert ("Sign out" in page.text) is (mode == "token")
    assert 'action="/logout"' in page.text if mode == "token" else 'action="/logout"' not in page.text


def test_the_favicon_is_served_and_linked(server):
    _, live = server
    for path in ("/favicon.svg", "/favicon.ico"):
        res = httpx.get(f"{live.url}{path}")  # no credentials: browsers ask before signing in
        assert res.status_code == 200, path
        assert res.headers["content-type"].startswith("image/svg+xml") and res.text.lstrip().startswith("<svg")
    for page in ("/", "/demo"):
        assert 'rel="icon" href="/favicon.svg"' in httpx.get(f"{live.url}{page}", headers=AUTH).text
