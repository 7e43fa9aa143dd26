from __future__ import annotations

import pytest

from motadata_actors import ConfigError, Settings
from motadata_actors._settings import redact_url


def test_defaults_with_an_empty_environment() -> None:
    s = Settings.from_env({})
    assert (s.nats_urls, s.enable_nats, s.codec, s.enable_otel) == ((), True, "json", False)
    assert s.enable_codec is True


def test_overriding_one_setting_keeps_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings(codec=...) used to drop NATS_URL: the program ran on a private server."""
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4500")
    monkeypatch.setenv("SDK_ASK_TIMEOUT", "2.5")
    monkeypatch.setenv("ENABLE_CODEC", "false")
    s = Settings(codec="cbor")
    assert (s.codec, s.nats_urls, s.ask_timeout, s.enable_codec) == (
        "cbor",
        ("nats://127.0.0.1:4500",),
        2.5,
        False,
    )
    assert Settings() == Settings.from_env()
    assert Settings.from_env({}).nats_urls == ()  # the built-in defaults, whatever the env
    # A bad variable is named even when another setting is overridden...
    monkeypatch.setenv("SDK_MAX_DEPTH", "zero")
    with pytest.raises(ConfigError, match="SDK_MAX_DEPTH"):
        Settings(codec="cbor")
    # ...and not when that very setting is given.
    assert Settings(max_depth=4).max_depth == 4


def test_several_nats_urls_are_split() -> None:
    s = Settings.from_env({"NATS_URL": "nats://127.0.0.1:4500, nats://127.0.0.2:4501,"})
    assert s.nats_urls == ("nats://127.0.0.1:4500", "nats://127.0.0.2:4501")


def test_flags_and_numbers() -> None:
    s = Settings.from_env(
        {
            "ENABLE_NATS": "False",
            "ENABLE_OTEL": "yes",
            "CODEC_TYPE": "MSGPACK",
            "SDK_ASK_TIMEOUT": "2.5",
            "SDK_MAILBOX_CAPACITY": "10",
        }
    )
    assert (s.enable_nats, s.enable_otel, s.codec, s.ask_timeout, s.mailbox_capacity) == (
        False,
        True,
        "msgpack",
        2.5,
        10,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NATS_URL": "http://127.0.0.1:80"}, "NATS_URL"),
        ({"NATS_URL": "nats://127.0.0.1:notaport"}, "NATS_URL"),
        ({"NATS_URL": "nats://:4500"}, "NATS_URL"),
        ({"ENABLE_NATS": "maybe"}, "ENABLE_NATS"),
        ({"ENABLE_OTEL": "2"}, "ENABLE_OTEL"),
        ({"CODEC_TYPE": "yaml"}, "CODEC_TYPE"),
        ({"SDK_ASK_TIMEOUT": "-1"}, "SDK_ASK_TIMEOUT"),
        ({"SDK_ASK_TIMEOUT": "soon"}, "SDK_ASK_TIMEOUT"),
        ({"SDK_ASK_TIMEOUT": "inf"}, "SDK_ASK_TIMEOUT"),
        ({"SDK_MAILBOX_CAPACITY": "1.5"}, "SDK_MAILBOX_CAPACITY"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_limits_come_from_the_environment() -> None:
    s = Settings.from_env(
        {"SDK_MAX_MESSAGE_SIZE": "4096", "SDK_MAX_DEPTH": "8", "SDK_MAX_LENGTH": "50"}
    )
    assert (s.max_message_size, s.max_depth, s.max_length) == (4096, 8, 50)
    with pytest.raises(ConfigError, match="SDK_MAX_DEPTH"):
        Settings.from_env({"SDK_MAX_DEPTH": "0"})


def test_overrides_keep_the_rest_of_the_environment() -> None:
    env = {"CODEC_TYPE": "msgpack", "SDK_DURABLE_MAX_DELIVER": "7"}
    settings = Settings.from_env(env, durable_max_deliver=2, ask_timeout=1.5)
    assert (settings.codec, settings.durable_max_deliver, settings.ask_timeout) == (
        "msgpack",
        2,
        1.5,
    )
    with pytest.raises(ConfigError, match="no such setting: durable_max_delivery"):
        Settings.from_env(env, durable_max_delivery=2)


SECRET = "s3cret-7f2a"


@pytest.mark.parametrize(
    "url",
    [
        f"nats://user:{SECRET}@127.0.0.1:notaport",  # a port that is not a number
        f"nats://user:{SECRET}@127.0.0.1:99999",  # out of range
        f"nats://user:{SECRET}@127.0.0.1:0",
        f"http://user:{SECRET}@127.0.0.1:14222",  # a scheme NATS does not speak
        f"nats://user:{SECRET}@:14222",  # no host
        f"nats://{SECRET}@:14222",  # a token, no host
        f"{SECRET}@",  # a token and nothing else
        f"nats://{SECRET}@[::1:14222",  # a broken IPv6 host
        f"nats://user:{SECRET}/x@127.0.0.1:14222",  # a password with '/' (not percent-encoded)
        f"nats://user:{SECRET}@some host:14222",  # whitespace in the host
    ],
)
def test_a_malformed_nats_url_never_shows_its_password_or_token(url: str) -> None:
    with pytest.raises(ConfigError, match="NATS_URL") as info:
        Settings.from_env({"NATS_URL": f"nats://127.0.0.1:4500,{url}"})
    assert SECRET not in str(info.value)
    assert "***" in str(info.value)
    # Made directly (not from the environment), it is not checked; its repr still hides it.
    assert SECRET not in repr(Settings(nats_urls=(url,)))
    assert SECRET not in redact_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://user:pw@127.0.0.1:14222", "nats://user:***@127.0.0.1:14222"),
        ("tls://tok@127.0.0.1:14222", "tls://***@127.0.0.1:14222"),
        ("user:p@w@127.0.0.1:14222", "user:***@127.0.0.1:14222"),
        ("nats://127.0.0.1:14222", "nats://127.0.0.1:14222"),
        ("127.0.0.1", "127.0.0.1"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
