"""Settings parsed from the environment: every variable's good values, bad values and secrecy."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from service.settings import ENV_VARS, Settings, SettingsError, settings_table

DIGEST_A = hashlib.sha256(b"key-a").hexdigest()
DIGEST_B = hashlib.sha256(b"key-b").hexdigest()
SEAL_KEY_A = bytes(range(32))
SEAL_KEY_B = bytes(range(32, 64))
SEAL_B64_A = base64.b64encode(SEAL_KEY_A).decode()
SEAL_B64_B = base64.b64encode(SEAL_KEY_B).decode()

# (variable, raw value, Settings field value it must produce)
GOOD: list[tuple[str, str, Any]] = [
    ("REDIS_URL", "redis://cache.internal:6380/2", "redis://cache.internal:6380/2"),
    ("REDIS_URL", "rediss://user:pw@cache:6380", "rediss://user:pw@cache:6380"),
    ("REDIS_URL", "unix:///run/redis.sock", "unix:///run/redis.sock"),
    (
        "REDIS_URL",
        "redis+sentinel://:pw@s1,s2:26380/main/1",
        "redis+sentinel://:pw@s1,s2:26380/main/1",
    ),
    ("REDIS_KEY_PREFIX", "prod-eu:", "prod-eu:"),
    ("REDIS_TIMEOUT_S", "0.5", 0.5),
    ("MONITE_BASE_URL", "https://api.monite.com/v1/", "https://api.monite.com/v1"),
    ("MONITE_BASE_URL", "http://127.0.0.1:8100/v1", "http://127.0.0.1:8100/v1"),
    ("MONITE_TOKEN", "eyJ.static.token", "eyJ.static.token"),
    ("MONITE_API_VERSION", "2025-01-15", "2025-01-15"),
    ("MONITE_RATE_LIMIT", "12.5", 12.5),
    ("MONITE_WEBHOOK_SECRET", "whsec_abc", "whsec_abc"),
    ("MONITE_TIMEOUT_S", " 3 ", 3.0),
    ("CALLBACK_ALLOWED_NETWORKS", "10.0.0.0/8, 192.168.1.7/24", ("10.0.0.0/8", "192.168.1.0/24")),
    ("CALLBACK_ALLOWED_NETWORKS", "::1/128", ("::1/128",)),
    ("CALLBACK_ALLOWED_HOSTS", "Hooks.Example.com., billing", ("hooks.example.com", "billing")),
    ("CALLBACK_ALLOWED_PORTS", "443, 8443", (443, 8443)),
    ("POLL_SCHEDULE_S", "1,2.5,10", (1.0, 2.5, 10.0)),
    ("DELIVERY_SCHEDULE_S", "0,5,30", (0.0, 5.0, 30.0)),
    ("DELIVERY_TIMEOUT_S", "2.5", 2.5),
    ("WATCH_DEADLINE_S", "3600", 3600),
    ("WATCH_RETENTION_S", "604800", 604800),
    ("WORKER_METRICS_PORT", "9100", 9100),
    ("API_RATE_LIMIT_PER_MINUTE", "60", 60),
    ("MAX_UPLOAD_BYTES", "1048576", 1048576),
    ("SECRETS_KEY", SEAL_B64_A, (SEAL_KEY_A,)),
    ("SECRETS_KEY", f"{SEAL_B64_B}, {SEAL_B64_A}", (SEAL_KEY_B, SEAL_KEY_A)),
    ("LOG_LEVEL", "debug", "DEBUG"),
    ("CONSOLE_SESSION_S", "3600", 3600),
]

# (variable, raw value); the error must name the variable.
BAD: list[tuple[str, str]] = [
    ("REDIS_URL", "nope"),
    ("REDIS_URL", "http://cache:6379/0"),
    ("REDIS_URL", "redis:///0"),
    ("REDIS_URL", "redis://cache:6379/zero"),
    ("REDIS_URL", "redis+sentinel://s1:26379"),
    ("REDIS_URL", "redis+sentinel://s1:http/main"),
    ("REDIS_URL", "redis+sentinel://s1/main/zero"),
    ("REDIS_URL", "redis+sentinel://s1/main?password=x"),
    ("REDIS_KEY_PREFIX", "has space:"),
    ("REDIS_KEY_PREFIX", "x" * 65),
    ("REDIS_TIMEOUT_S", "0"),
    ("MONITE_BASE_URL", "api.monite.com/v1"),
    ("MONITE_BASE_URL", "ftp://api.monite.com/v1"),
    ("MONITE_API_VERSION", "latest"),
    ("MONITE_API_VERSION", "2024/05/25"),
    ("MONITE_RATE_LIMIT", "0"),
    ("MONITE_RATE_LIMIT", "fast"),
    ("MONITE_RATE_LIMIT", "nan"),
    ("MONITE_TIMEOUT_S", "-1"),
    ("MONITE_TIMEOUT_S", "inf"),
    ("API_KEYS", "just-a-key"),
    ("API_KEYS", f"a:md5:{DIGEST_A}"),
    ("API_KEYS", "a:sha256:not-hex"),
    ("API_KEYS", "a:sha256:abcd"),
    ("API_KEYS", f"a:sha256:{DIGEST_A},a:sha256:{DIGEST_B}"),
    ("API_KEYS", "@/nonexistent/ocr-relay-keys"),
    ("CALLBACK_ALLOWED_NETWORKS", "10.0.0.0/33"),
    ("CALLBACK_ALLOWED_NETWORKS", "intranet.example.com"),
    ("POLL_SCHEDULE_S", "1,soon"),
    ("POLL_SCHEDULE_S", "1,-2"),
    ("DELIVERY_SCHEDULE_S", "0,,5"),
    ("DELIVERY_TIMEOUT_S", "0"),
    ("WATCH_DEADLINE_S", "1.5"),
    ("WATCH_DEADLINE_S", "0"),
    ("WATCH_RETENTION_S", "-5"),
    ("CALLBACK_ALLOWED_PORTS", "443,http"),
    ("WORKER_METRICS_PORT", "70000"),
    ("API_RATE_LIMIT_PER_MINUTE", "many"),
    ("MAX_UPLOAD_BYTES", "-1"),
    ("SECRETS_KEY", "not base64!"),
    ("SECRETS_KEY", base64.b64encode(bytes(16)).decode()),
    ("SECRETS_KEY", f"{SEAL_B64_A},{SEAL_B64_A}"),
    ("LOG_LEVEL", "verbose"),
    ("CONSOLE_KEYS", "alice"),
    ("CONSOLE_KEYS", f"alice:sha256:{DIGEST_A},alice:sha256:{DIGEST_B}"),
    ("CONSOLE_SESSION_S", "0"),
]

# Good values checked by dedicated tests below (a pair of variables, a key file, client digests).
GOOD_ELSEWHERE = {"MONITE_CLIENT_ID", "MONITE_CLIENT_SECRET", "API_KEYS", "CONSOLE_KEYS"}
# Free-form values that no value makes invalid on its own (the credential pair is tested below).
NO_BAD_VALUE = {
    "MONITE_CLIENT_ID",
    "MONITE_CLIENT_SECRET",
    "MONITE_TOKEN",
    "MONITE_WEBHOOK_SECRET",
    "CALLBACK_ALLOWED_HOSTS",
}


def test_every_variable_has_good_and_bad_cases() -> None:
    assert {var for var, _, _ in GOOD} | GOOD_ELSEWHERE == set(ENV_VARS)
    assert {var for var, _ in BAD} | NO_BAD_VALUE == set(ENV_VARS)


@pytest.mark.parametrize(("var", "raw", "expected"), GOOD)
def test_good_value_is_parsed(var: str, raw: str, expected: Any) -> None:
    field = ENV_VARS[var][0]
    assert getattr(Settings.from_env({var: raw}), field) == expected


@pytest.mark.parametrize(("var", "raw"), BAD)
def test_bad_value_raises_one_line_error_naming_the_variable(var: str, raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({var: raw})
    message = str(caught.value)
    assert caught.value.variable == var
    assert message.startswith(f"{var}: ")
    assert "\n" not in message


def test_defaults_match_the_design_table() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.monite_base_url == "https://api.sandbox.monite.com/v1"
    assert settings.monite_api_version == "2024-05-25"
    assert settings.monite_rate_limit == 25.0
    assert settings.delivery_timeout_s == 10.0
    assert settings.watch_deadline_s == 86400
    assert settings.log_level == "INFO"
    assert settings.api_keys == ()
    assert not settings.monite_has_credentials


def test_blank_value_means_the_default() -> None:
    assert Settings.from_env({"REDIS_URL": "  ", "LOG_LEVEL": ""}) == Settings()


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.from_env({"PATH": "/usr/bin", "REDIS": "nope"}) == Settings()


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.redis_url = "redis://elsewhere:6379/0"  # type: ignore[misc]


def test_api_keys_entries_give_named_clients_with_digests() -> None:
    settings = Settings.from_env({"API_KEYS": f"billing:sha256:{DIGEST_A}, crm:sha256:{DIGEST_B}"})
    assert [(c.name, c.key_sha256.hex()) for c in settings.api_keys] == [
        ("billing", DIGEST_A),
        ("crm", DIGEST_B),
    ]


def test_api_keys_are_read_from_a_file_skipping_comments(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"# rotated 2026-11\nbilling:sha256:{DIGEST_A}\n\ncrm:sha256:{DIGEST_B}\n")
    settings = Settings.from_env({"API_KEYS": f"@{key_file}"})
    assert [c.name for c in settings.api_keys] == ["billing", "crm"]


def test_console_keys_name_operators_apart_from_api_clients() -> None:
    settings = Settings.from_env(
        {"API_KEYS": f"billing:sha256:{DIGEST_A}", "CONSOLE_KEYS": f"alice:sha256:{DIGEST_B}"}
    )
    assert [(o.name, o.key_sha256.hex()) for o in settings.console_keys] == [("alice", DIGEST_B)]
    assert "alice" in repr(settings)
    assert DIGEST_B not in repr(settings)


def test_an_api_key_cannot_also_be_an_operator_key() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {"API_KEYS": f"billing:sha256:{DIGEST_A}", "CONSOLE_KEYS": f"alice:sha256:{DIGEST_A}"}
        )
    assert caught.value.variable == "CONSOLE_KEYS"
    assert "alice" in str(caught.value)


def test_monite_credentials_together_are_credentials() -> None:
    settings = Settings.from_env({"MONITE_CLIENT_ID": "id", "MONITE_CLIENT_SECRET": "secret"})
    assert (settings.monite_client_id, settings.monite_client_secret) == ("id", "secret")
    assert settings.monite_has_credentials


def test_static_token_counts_as_credentials() -> None:
    assert Settings.from_env({"MONITE_TOKEN": "tok"}).monite_has_credentials


@pytest.mark.parametrize(
    ("present", "missing"),
    [("MONITE_CLIENT_ID", "MONITE_CLIENT_SECRET"), ("MONITE_CLIENT_SECRET", "MONITE_CLIENT_ID")],
)
def test_half_of_the_monite_credentials_names_the_missing_one(present: str, missing: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({present: "value"})
    assert caught.value.variable == missing
    assert str(caught.value).startswith(f"{missing}: ")


def test_repr_and_str_hide_every_secret() -> None:
    secrets = {
        "MONITE_CLIENT_ID": "client-id",
        "MONITE_CLIENT_SECRET": "s3cret-client-value",
        "MONITE_TOKEN": "s3cret-token-value",
        "MONITE_WEBHOOK_SECRET": "s3cret-webhook-value",
        "API_KEYS": f"billing:sha256:{DIGEST_A}",
        "SECRETS_KEY": SEAL_B64_A,
        "REDIS_URL": "redis://ops:s3cret-redis-value@cache:6379/0?password=s3cret-redis-value",
    }
    settings = Settings.from_env(secrets)
    hiddens = ("s3cret-client-value", "s3cret-token-value", "s3cret-webhook-value")
    for text in (repr(settings), str(settings), repr(settings.api_keys)):
        for hidden in (*hiddens, "s3cret-redis-value"):
            assert hidden not in text
        assert DIGEST_A not in text
        assert repr(bytes.fromhex(DIGEST_A)) not in text
        assert SEAL_B64_A not in text
        assert repr(SEAL_KEY_A) not in text
    assert "billing" in repr(settings)
    assert "monite_client_secret='<set>'" in repr(settings)
    assert "secrets_key='<set>'" in repr(settings)
    assert "redis_url='redis://***@cache:6379/0?password=***'" in repr(settings)


def test_a_bad_secrets_key_error_does_not_echo_the_value() -> None:
    almost = base64.b64encode(b"k" * 31).decode()
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SECRETS_KEY": f"{SEAL_B64_A},{almost}"})
    assert "key #2" in str(caught.value)
    assert almost not in str(caught.value)
    assert SEAL_B64_A not in str(caught.value)


def test_the_readme_configuration_table_is_the_one_the_declarations_make() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert settings_table() in readme, (
        "README.md's configuration table differs from service/settings.py; paste this:\n"
        + settings_table()
    )


def test_every_setting_declares_its_variable_parser_and_doc() -> None:
    fields = {f.name for f in msgspec.structs.fields(Settings)}
    assert {field for field, _ in ENV_VARS.values()} == fields
    assert all(line.count("|") == 4 for line in settings_table().splitlines())
