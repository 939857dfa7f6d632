"""Audit rows: which client address they record."""

from __future__ import annotations

from activity_monitor.db import connect
from conftest import AuthActions


def audited_ips(app) -> list[str]:
    conn = connect(app.config["DATABASE"])
    try:
        rows = conn.execute("SELECT ip_address FROM audit_log WHERE action = 'CLEAR_ACTIVITY_CACHE'")
        return [row[0] for row in rows]
    finally:
        conn.close()


def clear_cache_from(app, forwarded_for: str) -> None:
    client = app.test_client()
    token = AuthActions(app, client).token("admin")
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": forwarded_for}
    assert client.post("/api/admin/activity/cache/clear", headers=headers).status_code == 200


def test_forwarded_addresses_are_ignored_without_trusted_proxies(make_app):
    app = make_app()
    clear_cache_from(app, "203.0.113.9")
    assert audited_ips(app) == ["127.0.0.1"]


def test_the_forwarded_address_is_recorded_behind_a_trusted_proxy(make_app):
    app = make_app(ACTIVITY_TRUSTED_PROXIES=1)
    clear_cache_from(app, "203.0.113.9")
    assert audited_ips(app) == ["203.0.113.9"]
