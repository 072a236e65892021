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


def test_an_alerts_chart_then_link_opens_the_page_at_that_moment(server):
    """Issue 28: an alert links to the camera's chart at that moment: the page at ``?camera=ID&at=T`` shows every
    chart from 30 min before to 10 min after T, says so, and offers the way back to live."""
    mode, live = server
    if mode != "open":
        pytest.skip("the page's behaviour is the same with a token; this case signs nobody in")
    from tests.dashboard_helpers import chromium_page, wait_for_js

    at = 1_790_000_000
    with chromium_page() as (page, errors):
        page.goto(f"{live.url}/?camera=tills&at={at}")
        wait_for_js(page, f"document.getElementById('chart-overall').dataset.start === '{at - 1800}'")
        assert page.is_visible("#focus-note") and "tills around" in page.inner_text("#focus-when")
        assert page.is_disabled("#range")
        page.click("#focus-note a")  # back to live: the chosen range again, ending now
        page.wait_for_url(f"{live.url}/")
        wait_for_js(page, f"Number(document.getElementById('chart-overall').dataset.start) > {at}")
        assert not page.is_visible("#focus-note")
        assert not errors, errors
