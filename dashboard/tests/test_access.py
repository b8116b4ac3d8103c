"""With AUTH=keys the dashboard takes an admin key, /metrics an admin key or
METRICS_TOKEN; with AUTH=none (make run) both are open on loopback."""

from __future__ import annotations

from app.lifespan import close_resources, open_resources
from auth.tests.conftest import Keys, bearer, keys_settings
from tasks.tests.fixtures import Stores, app_client

PATHS = [
    "/dashboard",
    "/dashboard/tasks",
    "/dashboard/static/dashboard.js",
    "/dashboard/throughput",
]


async def test_dashboard_and_metrics_take_an_admin_key(
    database_url: str, stores: Stores, namespace: str
) -> None:
    metrics_token = "t" * 40
    settings = keys_settings(database_url, stores, namespace, metrics_token=metrics_token)
    resources = open_resources(settings)
    try:
        keys = Keys(resources)
        admin, reader = await keys.token("ops", "admin"), await keys.token("a", "tasks:read")
    finally:
        await close_resources(resources)
    async with app_client(settings) as http:
        for path in PATHS:
            answers = [
                (await http.get(path, headers=headers)).status_code
                for headers in ({}, bearer(reader), bearer(admin), bearer(metrics_token))
            ]
            assert answers == [401, 403, 200, 401], path
        metrics = [
            (await http.get("/metrics", headers=headers)).status_code
            for headers in ({}, bearer(reader), bearer(admin), bearer(metrics_token))
        ]
    assert metrics == [401, 403, 200, 200]
