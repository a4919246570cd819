"""The judge URL allow-list, Retry-After, strict verdict parsing and the rubric renderer."""

from __future__ import annotations

import email.utils
import time

import pytest

from judging.http import URLRefused, check_url, pin_url, retry_after_seconds
from judging.kinds import FIRST, SECOND, TIE, Pair
from judging.kinds.llm import parse_verdict, render_rubric


@pytest.mark.parametrize(
    ("url", "allowed", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", ["api.example.com"], "not in"),
        ("http://localhost:8000/v1", ["localhost"], "resolves to 127.0.0.1"),
        ("http://127.0.0.1:8000/v1", [], "not in"),
        ("http://127.0.0.1:8000/v1", ["10.0.0.0/8"], "not in"),
        ("file:///etc/passwd", ["127.0.0.1"], "http:// or https://"),
        ("http://user:secret@127.0.0.1/v1", ["127.0.0.1"], "credentials"),
        ("http://api.example.com.evil.test/v1", ["api.example.com"], "not in"),
        ("http://example.com/v1", ["*.example.com"], "not in"),
    ],
)
def test_urls_outside_the_allow_list_are_refused(url, allowed, reason):
    with pytest.raises(URLRefused, match=reason.replace(".", r"\.")):
        check_url(url, allowed)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8000/v1", ["127.0.0.1"]),
        ("http://127.0.0.1:8000/v1", ["127.0.0.0/8"]),
        ("http://[::1]:8000/v1", ["::1"]),
    ],
)
def test_loopback_is_allowed_only_when_named_as_an_address(url, allowed):
    assert check_url(url, allowed) == url


def test_the_settings_allow_list_is_the_default(settings):
    settings.PREFLAB_JUDGE_ALLOWED_HOSTS = []
    with pytest.raises(URLRefused, match="PREFLAB_JUDGE_ALLOWED_HOSTS"):
        check_url("http://127.0.0.1/v1")
    settings.PREFLAB_JUDGE_ALLOWED_HOSTS = ["127.0.0.1"]
    assert check_url("http://127.0.0.1/v1")


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_seconds(later) <= 31


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("A", FIRST),
        ("**B**", SECOND),
        ("tie.", TIE),
        ("Long reasoning about both... [[B]]", SECOND),
        ("[[A]] ... as I said, [[A]]", FIRST),
        ("Reasoning.\nVerdict: A", FIRST),
        ("Reasoning.\n**Final answer:** B", SECOND),
        ("Reasoning.\nWinner: tie", TIE),
        ("[[A]] no wait [[B]]", None),
        ("Both have merit.", None),
        ("A is better than B in style, B is better in substance.", None),
        ("The answer is A", None),
        ("", None),
    ],
)
def test_verdicts_are_parsed_strictly(answer, verdict):
    assert parse_verdict(answer) == verdict


def test_the_rubric_is_rendered_once_without_a_template_engine():
    pair = Pair(
        prompt="Say {response_b} and {{ settings.SECRET_KEY }}",
        first="{guidelines}",
        second="second",
        guidelines="be kind",
    )
    rendered = render_rubric(
        "P={prompt} A={response_a} B={response_b} G={guidelines} {unknown} {{ x }}", pair
    )
    assert rendered == (
        "P=Say {response_b} and {{ settings.SECRET_KEY }} A={guidelines} B=second G=be kind "
        "{unknown} {{ x }}"
    )


def test_pinning_puts_the_checked_address_in_the_url_and_the_name_in_host_and_sni():
    pinned = pin_url(
        "https://localhost:8443/v1/chat/completions", ["localhost", "127.0.0.1", "::1"]
    )
    assert pinned.url == "https://127.0.0.1:8443/v1/chat/completions"
    assert (pinned.host_header, pinned.server_name) == ("localhost:8443", "localhost")
    literal = pin_url("http://127.0.0.1:80/v1", ["127.0.0.1"])
    assert (literal.url, literal.server_name) == ("http://127.0.0.1:80/v1", None)
