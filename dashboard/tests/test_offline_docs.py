"""/docs and /redoc load their scripts and styles from the API, not from a CDN."""

from __future__ import annotations

import re

from app.config import Settings
from tasks.tests.fixtures import app_client


async def test_the_api_documentation_needs_no_other_host(settings: Settings) -> None:
    async with app_client(settings) as http:
        for page in ("/docs", "/redoc"):
            html = (await http.get(page)).text
            assets = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
            assert assets, page
            assert not [url for url in assets if "//" in url], (page, assets)
            for url in assets:
                response = await http.get(url)
                assert response.status_code == 200, (page, url)
