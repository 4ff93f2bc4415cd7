"""Settings: TOML file, then environment, then explicit overrides; bad values refused early."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import stat
import threading
from pathlib import Path

import msgspec
import pytest

from guahao.config import Settings, load_settings


def _toml(tmp_path: Path, body: str) -> str:
    path = tmp_path / "guahao.toml"
    path.write_text(body, encoding="utf-8")
    return str(path)


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.port == 8000
    assert settings.run_jobs is True


def test_toml_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    config = _toml(
        tmp_path,
        'host = "0.0.0.0"\nport = 9000\nlog_level = "DEBUG"\nrun_jobs = false\n',
    )
    settings = load_settings({"GUAHAO_CONFIG": config, "GUAHAO_PORT": "9100"})
    assert settings.port == 9100  # environment over file
    assert settings.host == "0.0.0.0"  # file over default
    assert settings.log_level == "DEBUG"
    assert settings.run_jobs is False


def test_overrides_win_over_environment_and_file(tmp_path: Path) -> None:
    config = _toml(tmp_path, "port = 9000\n")
    settings = load_settings({"GUAHAO_CONFIG": config, "GUAHAO_PORT": "9100"}, port=9200)
    assert settings.port == 9200


def test_environment_strings_are_converted_to_field_types() -> None:
    settings = load_settings(
        {"GUAHAO_RUN_JOBS": "false", "GUAHAO_TOKEN_MINUTES": "30", "GUAHAO_LOG_LEVEL": "INFO"}
    )
    assert settings.run_jobs is False
    assert settings.token_minutes == 30
    assert settings.log_level == "INFO"


def test_unknown_guahao_variables_and_other_variables_are_ignored() -> None:
    settings = load_settings(
        {
            "GUAHAO_NOT_A_FIELD": "x",
            "GUAHAO_TEST_POSTGRES_URL": "postgresql://elsewhere/db",
            "GUAHAO_": "empty name",
            "PORT": "1234",
            "guahao_port": "1234",  # only the upper-case prefix counts
        }
    )
    assert settings == Settings()


def test_unknown_keys_in_the_toml_file_are_refused(tmp_path: Path) -> None:
    config = _toml(tmp_path, "prot = 9000\n")
    with pytest.raises(msgspec.ValidationError, match="prot"):
        load_settings({"GUAHAO_CONFIG": config})


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"GUAHAO_PORT": "abc"}, "port"),
        ({"GUAHAO_PORT": "70000"}, "port"),
        ({"GUAHAO_PORT": "-1"}, "port"),
        ({"GUAHAO_TOKEN_MINUTES": "0"}, "token_minutes"),
        ({"GUAHAO_LOG_LEVEL": "LOUD"}, "log_level"),
        ({"GUAHAO_RUN_JOBS": "perhaps"}, "run_jobs"),
        ({"GUAHAO_SECRET_KEY": "s3cret"}, "secret_key"),
        ({"GUAHAO_PAYMENT_SECRET": "x" * 31}, "payment_secret"),
    ],
)
def test_bad_values_are_refused_naming_the_field(environ: dict[str, str], field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=rf"\$\.{field}\b"):
        load_settings(environ)


def test_bad_value_in_the_toml_file_is_refused_naming_the_field(tmp_path: Path) -> None:
    config = _toml(tmp_path, "port = 70000\n")
    with pytest.raises(msgspec.ValidationError, match=r"\$\.port"):
        load_settings({"GUAHAO_CONFIG": config})


def test_database_url_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"))
    assert settings.resolved_database_url() == (
        f"sqlite+aiosqlite:///{(tmp_path / 'data').resolve()}/guahao.db"
    )
    relative = Settings(data_dir="relative-dir")
    assert relative.resolved_database_url() == (
        f"sqlite+aiosqlite:///{Path('relative-dir').resolve()}/guahao.db"
    )
    explicit = "postgresql+asyncpg://u:p@db:5432/guahao"
    assert Settings(database_url=explicit).resolved_database_url() == explicit


def test_public_url_defaults_to_host_and_port() -> None:
    assert Settings().resolved_public_url() == "http://127.0.0.1:8000"
    assert Settings(host="0.0.0.0", port=9000).resolved_public_url() == "http://0.0.0.0:9000"
    assert (
        Settings(public_url="https://guahao.example.cn/").resolved_public_url()
        == "https://guahao.example.cn"
    )


def test_secret_is_generated_once_private_and_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"))
    first = settings.secret("secret_key")
    path = tmp_path / "data" / "keys" / "secret_key"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(first)) == 32

    assert settings.secret("secret_key") == first
    # a new process (new Settings) on the same data dir gets the same key
    assert Settings(data_dir=str(tmp_path / "data")).secret("secret_key") == first
    # each secret has its own key
    assert settings.secret("data_key") != first


def test_an_explicit_secret_wins_and_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), payment_secret="from-operator")
    assert settings.secret("payment_secret") == "from-operator"
    assert not (tmp_path / "data" / "keys" / "payment_secret").exists()

    generated = Settings(data_dir=str(tmp_path / "data")).secret("payment_secret")
    assert generated != "from-operator"
    assert settings.secret("payment_secret") == "from-operator"  # a set value beats the file


def test_explicit_secret_from_the_environment(tmp_path: Path) -> None:
    key = "an operator's key of 32 characters"
    settings = load_settings({"GUAHAO_DATA_DIR": str(tmp_path), "GUAHAO_SECRET_KEY": key})
    assert settings.secret("secret_key") == key
    assert not (tmp_path / "keys").exists()


def test_an_unknown_payment_gateway_is_refused_not_served_by_the_sandbox() -> None:
    assert load_settings({"GUAHAO_PAYMENT_GATEWAY": "sandbox"}).payment_gateway == "sandbox"
    with pytest.raises(msgspec.ValidationError, match=r"\$\.payment_gateway"):
        load_settings({"GUAHAO_PAYMENT_GATEWAY": "alipay"})


def test_processes_starting_together_share_one_complete_secret(tmp_path: Path) -> None:
    """Two processes on a fresh data dir: neither fails, neither reads a half-written (empty)
    key, both use the same one. Threads stand in for the processes."""
    for trial in range(20):
        settings = Settings(data_dir=str(tmp_path / f"data-{trial}"))
        barrier = threading.Barrier(8)

        def first_start(settings: Settings = settings, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            return settings.secret("secret_key")

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            keys = [f.result() for f in [pool.submit(first_start) for _ in range(8)]]
        assert len(set(keys)) == 1
        assert len(base64.b64decode(keys[0])) == 32
        assert os.listdir(tmp_path / f"data-{trial}" / "keys") == ["secret_key"]


def test_the_pool_settings_come_from_the_environment_and_refuse_nonsense() -> None:
    settings = load_settings(
        {"GUAHAO_DATABASE_POOL_SIZE": "12", "GUAHAO_DATABASE_POOL_TIMEOUT_SECONDS": "2.5"}
    )
    assert (settings.database_pool_size, settings.database_pool_timeout_seconds) == (12, 2.5)
    defaults = load_settings({})
    assert (defaults.database_pool_size, defaults.database_pool_timeout_seconds) == (40, 30.0)
    for name, value in [
        ("GUAHAO_DATABASE_POOL_SIZE", "0"),
        ("GUAHAO_DATABASE_POOL_TIMEOUT_SECONDS", "0"),
        ("GUAHAO_DATABASE_POOL_TIMEOUT_SECONDS", "-1"),
    ]:
        with pytest.raises(msgspec.ValidationError):
            load_settings({name: value})
