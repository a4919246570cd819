"""X-Forwarded-Proto / X-Forwarded-For count only from TRUSTED_PROXIES; the shipped nginx
config sets them itself instead of passing a client's values on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings

from config.middleware import TrustedProxyMiddleware

NGINX_CONF = Path(__file__).resolve().parents[2] / "platform" / "nginx.conf"
PRODUCTION = {"SECURE_SSL_REDIRECT": True, "TRUSTED_PROXIES": ["10.9.0.2", "fd00::/8"]}


@pytest.mark.django_db
@override_settings(**PRODUCTION)
def test_a_client_claiming_https_over_plain_http_is_still_redirected() -> None:
    response = Client().get("/healthz", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")


@pytest.mark.django_db
@override_settings(**PRODUCTION)
@pytest.mark.parametrize("proxy", ["10.9.0.2", "fd00::17"])
def test_the_trusted_proxy_s_https_is_believed(proxy: str) -> None:
    response = Client().get("/healthz", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR=proxy)
    assert (response.status_code, response.content) == (200, b"ok")


@override_settings(TRUSTED_PROXIES=["10.9.0.2"])
def test_forwarded_for_sets_the_client_address_only_through_the_proxy(rf: Any) -> None:
    seen: dict[str, Any] = {}

    def view(request: Any) -> Any:
        seen.update(request.META)
        return None

    middleware = TrustedProxyMiddleware(view)
    middleware(rf.get("/", REMOTE_ADDR="10.9.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7"))
    # The last entry is the one the proxy itself saw; earlier ones are the client's say-so.
    assert seen["REMOTE_ADDR"] == "198.51.100.7"
    seen.clear()
    middleware(rf.get("/", REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR="10.9.0.2"))
    assert seen["REMOTE_ADDR"] == "203.0.113.5"
    assert "HTTP_X_FORWARDED_FOR" not in seen


def test_a_malformed_trusted_proxies_entry_is_a_clear_error() -> None:
    with override_settings(TRUSTED_PROXIES=["10.0.0.0/8", "proxy.internal"]):
        middleware = TrustedProxyMiddleware(lambda request: None)
        with pytest.raises(ValueError, match=r"TRUSTED_PROXIES: 'proxy\.internal'"):
            middleware.is_trusted("10.0.0.1")


def test_nginx_sets_the_forwarded_headers_instead_of_passing_the_client_s() -> None:
    conf = NGINX_CONF.read_text(encoding="utf-8")
    headers = dict(re.findall(r"proxy_set_header\s+(\S+)\s+([^;]+);", conf))
    assert headers["X-Forwarded-For"] == "$remote_addr"
    assert headers["X-Forwarded-Proto"] == "$preflab_forwarded_proto"
    # The forwarded scheme is the proxy's own unless a configured edge (geo) sent it.
    mapping = re.search(
        r'map "\$preflab_edge_trusted:\$http_x_forwarded_proto"[^{]*\{([^}]*)\}', conf
    )
    assert mapping, "the scheme map must key on the trusted-edge flag"
    assert re.search(r"default\s+\$scheme;", mapping.group(1))
    assert "$http_x_forwarded_proto;" not in conf.replace(mapping.group(0), "")
    assert re.search(r"geo \$preflab_edge_trusted \{\s*default 0;\s*\}", conf)
