"""Configuration resolution and named connections (``assetry.config``).

Order: arguments > environment > ``[tool.assetry]`` in the nearest pyproject.toml (or an
assetry.toml) > the embedded default. Secrets never show in a repr, a description or an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from assetry import ConfigurationError, Connection, Settings, load_settings
from assetry.config import default_conn_id, find_config_file, redact

SECRET = "hunter2-s3cr3t"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ASSETRY_* variable from the outer environment leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("ASSETRY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder with no configuration file in it or above it."""
    root = tmp_path / "project"
    root.mkdir()
    if find_config_file(root) is not None:  # pragma: no cover - depends on the machine
        pytest.skip(f"a configuration file above {root} would be found: {find_config_file(root)}")
    return root


def _write_pyproject(folder: Path, body: str) -> Path:
    path = folder / "pyproject.toml"
    path.write_text('[project]\nname = "pipeline"\n\n' + body, encoding="utf-8")
    return path


def _assert_no_secret(*texts: object) -> None:
    for text in texts:
        assert SECRET not in str(text), text


# -- defaults --------------------------------------------------------------------------------


def test_default_is_sql_on_sqlite_under_the_working_directory(project: Path) -> None:
    settings = load_settings(cwd=project)
    assert settings.backend == "sql"
    assert settings.backend_url == f"sqlite:///{project / '.assetry' / 'state.db'}"
    assert settings.config_file is None
    assert settings.sources["backend"] == settings.sources["backend_url"] == "default"
    assert settings.max_value_bytes == 64 * 1024
    assert settings.backend_options == {}
    assert settings.connections == {}


def test_default_uses_the_current_directory(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    assert load_settings().backend_url == f"sqlite:///{Path.cwd() / '.assetry' / 'state.db'}"


def test_default_does_not_apply_when_only_a_url_is_given(project: Path) -> None:
    settings = load_settings(url="memory://shared", cwd=project)
    assert (settings.backend, settings.backend_url) == (None, "memory://shared")


# -- configuration files ---------------------------------------------------------------------


def test_pyproject_is_found_walking_up_from_a_nested_directory(project: Path) -> None:
    path = _write_pyproject(
        project,
        '[tool.assetry]\nbackend = "memory"\nbackend_url = "memory://team"\n'
        "max_value_bytes = 1000\n",
    )
    nested = project / "src" / "pipelines" / "daily"
    nested.mkdir(parents=True)
    settings = load_settings(cwd=nested)
    assert (settings.backend, settings.backend_url) == ("memory", "memory://team")
    assert settings.max_value_bytes == 1000
    assert settings.config_file == path
    assert settings.sources["backend"] == str(path)
    assert settings.sources["max_value_bytes"] == str(path)


def test_current_directory_is_searched_when_no_cwd_is_given(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pyproject(project, '[tool.assetry]\nbackend = "memory"\n')
    nested = project / "notebooks"
    nested.mkdir()
    monkeypatch.chdir(nested)
    assert load_settings().backend == "memory"


def test_pyproject_without_a_tool_assetry_table_is_passed_over(project: Path) -> None:
    outer = _write_pyproject(project, '[tool.assetry]\nbackend = "memory"\n')
    inner = project / "package"
    inner.mkdir()
    _write_pyproject(inner, "[tool.ruff]\nline-length = 100\n")
    settings = load_settings(cwd=inner)
    assert settings.backend == "memory"
    assert settings.config_file == outer


def test_url_is_an_alias_of_backend_url_in_files(project: Path) -> None:
    _write_pyproject(project, '[tool.assetry]\nurl = "memory://by-alias"\n')
    assert load_settings(cwd=project).backend_url == "memory://by-alias"


@pytest.mark.parametrize(
    "body",
    ['backend = "memory"\n', '[tool.assetry]\nbackend = "memory"\n'],
    ids=["top-level", "tool-table"],
)
def test_assetry_toml_is_read(project: Path, body: str) -> None:
    (project / "assetry.toml").write_text(body, encoding="utf-8")
    settings = load_settings(cwd=project)
    assert settings.backend == "memory"
    assert settings.config_file == project / "assetry.toml"


def test_assetry_toml_wins_over_pyproject_in_the_same_folder(project: Path) -> None:
    _write_pyproject(project, '[tool.assetry]\nbackend = "sql"\n')
    (project / "assetry.toml").write_text('backend = "memory"\n', encoding="utf-8")
    assert load_settings(cwd=project).backend == "memory"


def test_nearest_file_wins(project: Path) -> None:
    (project / "assetry.toml").write_text('backend = "sql"\n', encoding="utf-8")
    inner = project / "sub"
    inner.mkdir()
    _write_pyproject(inner, '[tool.assetry]\nbackend = "memory"\n')
    assert load_settings(cwd=inner).backend == "memory"
    assert load_settings(cwd=project).backend == "sql"


def test_unknown_setting_is_an_error_naming_it_and_the_file(project: Path) -> None:
    path = _write_pyproject(project, '[tool.assetry]\nbackend = "memory"\nbakend_url = "x"\n')
    with pytest.raises(ConfigurationError) as info:
        load_settings(cwd=project)
    assert "bakend_url" in str(info.value)
    assert str(path) in str(info.value)
    assert "backend_url" in str(info.value)  # the known names are listed


def test_malformed_toml_is_an_error_naming_the_file(project: Path) -> None:
    path = project / "pyproject.toml"
    path.write_text(f'[tool.assetry\nbackend_url = "postgresql://u:{SECRET}@h/db"\n')
    with pytest.raises(ConfigurationError, match="not valid TOML") as info:
        load_settings(cwd=project)
    assert str(path) in str(info.value)
    _assert_no_secret(info.value)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("backend = 1\n", "backend must be a name"),
        ("backend_url = 5\n", "backend_url must be a string"),
        ('backend_options = "x"\n', "backend_options .* must be a table"),
        ('connections = "x"\n', "connections .* must be a table"),
        ("[tool.assetry.connections]\nx = 1\n", "connection 'x' .* must be a URI or a table"),
        ('max_value_bytes = "lots"\n', "max_value_bytes must be a whole number"),
        ("max_value_bytes = 0\n", "max_value_bytes must be positive"),
        ('auto_upgrade = "maybe"\n', "auto_upgrade must be true or false"),
    ],
)
def test_bad_values_in_the_file_are_configuration_errors(
    project: Path, body: str, text: str
) -> None:
    if not body.startswith("["):
        body = "[tool.assetry]\n" + body
    _write_pyproject(project, body)
    with pytest.raises(ConfigurationError, match=text):
        load_settings(cwd=project)


# -- environment and arguments ---------------------------------------------------------------


def test_environment_overrides_the_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_pyproject(
        project,
        '[tool.assetry]\nbackend = "sql"\nbackend_url = "sqlite:///file.db"\n'
        "max_value_bytes = 1000\n",
    )
    monkeypatch.setenv("ASSETRY_BACKEND", "memory")
    monkeypatch.setenv("ASSETRY_BACKEND_URL", "memory://from-env")
    monkeypatch.setenv("ASSETRY_MAX_VALUE_BYTES", "2048")
    settings = load_settings(cwd=project)
    assert (settings.backend, settings.backend_url) == ("memory", "memory://from-env")
    assert settings.max_value_bytes == 2048
    assert settings.sources["backend"] == "environment ASSETRY_BACKEND"
    assert settings.sources["backend_url"] == "environment ASSETRY_BACKEND_URL"
    assert settings.sources["max_value_bytes"] == "environment ASSETRY_MAX_VALUE_BYTES"


def test_settings_not_in_the_environment_still_come_from_the_file(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_pyproject(project, '[tool.assetry]\nbackend_url = "memory://file"\n')
    monkeypatch.setenv("ASSETRY_BACKEND", "memory")
    settings = load_settings(cwd=project)
    assert settings.sources["backend"] == "environment ASSETRY_BACKEND"
    assert settings.sources["backend_url"] == str(path)


def test_empty_environment_variable_is_ignored(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pyproject(project, '[tool.assetry]\nbackend = "memory"\n')
    monkeypatch.setenv("ASSETRY_BACKEND", "")
    assert load_settings(cwd=project).backend == "memory"


def test_arguments_override_environment_and_file(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pyproject(project, '[tool.assetry]\nbackend = "sql"\nmax_value_bytes = 10\n')
    monkeypatch.setenv("ASSETRY_BACKEND", "objectstore")
    monkeypatch.setenv("ASSETRY_BACKEND_URL", "s3://bucket/state")
    monkeypatch.setenv("ASSETRY_MAX_VALUE_BYTES", "20")
    monkeypatch.setenv("ASSETRY_BACKEND_OPTIONS", '{"pool_size": 2}')
    settings = load_settings(
        backend="memory",
        url="memory://arg",
        options={"pool_size": 9},
        max_value_bytes=30,
        cwd=project,
    )
    assert (settings.backend, settings.backend_url) == ("memory", "memory://arg")
    assert settings.max_value_bytes == 30
    assert settings.backend_options == {"pool_size": 9}
    for name in ("backend", "backend_url", "max_value_bytes", "backend_options"):
        assert settings.sources[name] == "argument"


def test_backend_options_merge_file_then_environment_then_arguments(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pyproject(project, "[tool.assetry.backend_options]\na = 1\nb = 1\nc = 1\n")
    monkeypatch.setenv("ASSETRY_BACKEND_OPTIONS", '{"b": 2, "c": 2}')
    settings = load_settings(options={"c": 3}, cwd=project)
    assert settings.backend_options == {"a": 1, "b": 2, "c": 3}
    assert settings.sources["backend_options"] == "argument"
    settings = load_settings(cwd=project)
    assert settings.backend_options == {"a": 1, "b": 2, "c": 2}
    assert settings.sources["backend_options"] == "environment ASSETRY_BACKEND_OPTIONS"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '"text"', "{'a': 1}"])
def test_backend_options_must_be_a_json_object(
    project: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("ASSETRY_BACKEND_OPTIONS", text)
    with pytest.raises(ConfigurationError, match="ASSETRY_BACKEND_OPTIONS must be a JSON object"):
        load_settings(cwd=project)


def test_malformed_backend_options_error_does_not_echo_a_secret(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRY_BACKEND_OPTIONS", f'{{"password": "{SECRET}",}}')
    with pytest.raises(ConfigurationError) as info:
        load_settings(cwd=project)
    _assert_no_secret(info.value)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_max_value_bytes_from_the_environment_must_be_a_positive_int(
    project: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ASSETRY_MAX_VALUE_BYTES", value)
    with pytest.raises(ConfigurationError, match="max_value_bytes"):
        load_settings(cwd=project)


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("off", False)])
def test_auto_upgrade_from_the_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("ASSETRY_AUTO_UPGRADE", value)
    assert load_settings(cwd=project).auto_upgrade is expected


def test_explicit_environ_mapping_replaces_os_environ(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRY_BACKEND", "objectstore")
    settings = load_settings(cwd=project, environ={"ASSETRY_BACKEND": "memory"})
    assert settings.backend == "memory"


# -- connections -----------------------------------------------------------------------------


def test_connection_from_a_uri_in_the_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "ASSETRY_CONN_WAREHOUSE_PG",
        f"postgresql://etl%40corp:{SECRET}%21@db.internal:6543/analytics?sslmode=require",
    )
    settings = load_settings(cwd=project)
    conn = settings.connection("warehouse_pg")
    assert conn is not None
    assert settings.connection("WAREHOUSE_PG") is conn
    assert conn.login == "etl@corp"
    assert conn.password == f"{SECRET}!"
    assert conn.host == "db.internal"
    assert conn.port == 6543
    assert conn.database == "analytics"
    assert conn.get("sslmode") == "require"
    assert settings.sources["conn:warehouse_pg"] == "environment ASSETRY_CONN_WAREHOUSE_PG"


def test_connection_from_json_carries_storage_options(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {
        "endpoint_url": "http://127.0.0.1:9000",
        "key": "AKIA-EXAMPLE",
        "secret": SECRET,
        "client_kwargs": {"region_name": "eu-west-1"},
    }
    monkeypatch.setenv("ASSETRY_CONN_AWS_DEFAULT", json.dumps(options))
    conn = load_settings(cwd=project).connection("aws_default")
    assert conn is not None
    assert conn.uri is None
    assert conn.storage_options == options


def test_connection_from_json_with_database_fields() -> None:
    conn = Connection.parse(
        "mysql_default",
        json.dumps(
            {
                "uri": "mysql://ignored-host/ignored_db",
                "login": "loader",
                "password": SECRET,
                "host": "mariadb.internal",
                "port": "3307",
                "database": "warehouse",
            }
        ),
    )
    assert conn.uri == "mysql://ignored-host/ignored_db"
    assert (conn.login, conn.password, conn.host) == ("loader", SECRET, "mariadb.internal")
    assert conn.port == 3307
    assert conn.database == "warehouse"
    assert "uri" not in conn.options


def test_connection_login_accepts_user_and_username() -> None:
    assert Connection.parse("a", '{"user": "u1"}').login == "u1"
    assert Connection.parse("b", '{"username": "u2"}').login == "u2"
    assert Connection("c").login is None
    assert Connection("c").port is None


def test_storage_options_merge_uri_query_under_explicit_options() -> None:
    conn = Connection("x", "s3://?endpoint_url=http://a&anon=false", {"endpoint_url": "http://b"})
    assert conn.storage_options == {"endpoint_url": "http://b", "anon": "false"}


def test_connections_from_the_file_and_environment_override(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_pyproject(
        project,
        "[tool.assetry.connections]\n"
        'Lake = \'{"endpoint_url": "http://file:9000"}\'\n'
        'pg = { uri = "postgresql://u@file-host/db", sslmode = "require" }\n',
    )
    monkeypatch.setenv("ASSETRY_CONN_PG", "postgresql://u@env-host/db")
    settings = load_settings(cwd=project)
    lake, pg = settings.connection("lake"), settings.connection("pg")
    assert lake is not None and pg is not None
    assert lake.storage_options == {"endpoint_url": "http://file:9000"}
    assert pg.host == "env-host"
    assert settings.sources["conn:lake"] == str(path)
    assert settings.sources["conn:pg"] == "environment ASSETRY_CONN_PG"


def test_connection_table_in_the_file_keeps_its_options(project: Path) -> None:
    _write_pyproject(
        project,
        '[tool.assetry.connections.pg]\nuri = "postgresql://u@h:5/db"\nsslmode = "require"\n',
    )
    conn = load_settings(cwd=project).connection("pg")
    assert conn is not None
    assert (conn.host, conn.port, conn.get("sslmode")) == ("h", 5, "require")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f'{{"password": "{SECRET}", bad', "not valid JSON"),
        ("[1, 2]", "must be a URI"),
        (SECRET, "must be a URI"),
        ('{"a": 1', "not valid JSON"),
    ],
)
def test_malformed_connection_is_an_error_without_the_secret(
    project: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.setenv("ASSETRY_CONN_BROKEN", text)
    with pytest.raises(ConfigurationError, match=message) as info:
        load_settings(cwd=project)
    assert "'broken'" in str(info.value)
    _assert_no_secret(info.value)


def test_connection_with_an_invalid_port_errors_without_the_secret() -> None:
    conn = Connection.parse("pg", f"postgresql://u:{SECRET}@h:notaport/db")
    with pytest.raises(ConfigurationError, match="invalid port") as info:
        _ = conn.port
    _assert_no_secret(info.value, repr(conn))


@pytest.mark.parametrize(
    ("scheme", "conn_id"),
    [
        ("s3", "aws_default"),
        ("S3", "aws_default"),
        ("gs", "google_cloud_default"),
        ("abfs", "azure_default"),
        ("postgresql+psycopg", "postgres_default"),
        ("mysql+pymysql", "mysql_default"),
        ("file", None),
        ("memory", None),
    ],
)
def test_default_connection_id_per_scheme(scheme: str, conn_id: str | None) -> None:
    assert default_conn_id(scheme) == conn_id


# -- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conn",
    [
        Connection.parse("pg", f"postgresql://u:{SECRET}@h/db"),
        Connection.parse("pg", f"postgresql://h/db?password={SECRET}"),
        Connection.parse("aws", f"s3://?key=AKIA&secret={SECRET}&endpoint_url=http://h"),
        Connection.parse("aws", json.dumps({"secret": SECRET, "endpoint_url": "http://h"})),
        Connection.parse("x", json.dumps({"client_kwargs": {"aws_secret_access_key": SECRET}})),
        Connection.parse("x", json.dumps({"token": SECRET, "sas_token": SECRET})),
        Connection.parse("x", json.dumps({"uri": f"mysql://u:{SECRET}@h/db", "password": SECRET})),
    ],
    ids=["uri-password", "uri-query", "s3-query", "json", "nested-json", "tokens", "json-uri"],
)
def test_connection_repr_never_shows_a_secret(conn: Connection) -> None:
    _assert_no_secret(repr(conn), str(conn), f"{conn!r}")
    assert "***" in repr(conn)


def test_settings_repr_and_describe_never_show_a_secret(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pyproject(
        project,
        "[tool.assetry.connections]\n"
        f'lake = {{ endpoint_url = "http://h:9000", secret = "{SECRET}" }}\n',
    )
    monkeypatch.setenv("ASSETRY_BACKEND_URL", f"postgresql+psycopg://etl:{SECRET}@h:5432/state")
    monkeypatch.setenv(
        "ASSETRY_BACKEND_OPTIONS", json.dumps({"connect_args": {"password": SECRET}})
    )
    monkeypatch.setenv("ASSETRY_CONN_PG", f"postgresql://u:{SECRET}@h/db?sslmode=require")
    settings = load_settings(cwd=project)
    assert settings.backend_url is not None and SECRET in settings.backend_url  # still usable
    _assert_no_secret(repr(settings), str(settings), settings.describe())
    described = {row[0]: row for row in settings.describe()}
    assert described["backend_url"][1] == "postgresql+psycopg://etl:***@h:5432/state"
    assert described["backend_url"][2] == "environment ASSETRY_BACKEND_URL"
    assert described["connection pg"][2] == "environment ASSETRY_CONN_PG"
    assert "sslmode=require" in described["connection pg"][1]


def test_settings_describe_names_every_source(project: Path) -> None:
    settings = load_settings(cwd=project, backend="memory")
    rows = {name: source for name, _, source in settings.describe()}
    assert rows["backend"] == "argument"
    assert rows["max_value_bytes"] == "default"


def test_redact_masks_secret_looking_entries_and_url_passwords() -> None:
    value = {
        "endpoint_url": "http://h",
        "password": SECRET,
        "nested": {"api_token": SECRET, "items": [f"s3://u:{SECRET}@h/x"]},
        "empty_secret": "",
    }
    redacted = redact(value)
    _assert_no_secret(redacted)
    assert redacted["endpoint_url"] == "http://h"
    assert redacted["password"] == "***"
    assert redacted["nested"]["items"] == ["s3://u:***@h/x"]
    assert value["password"] == SECRET  # the input is untouched


def test_settings_is_a_value_object(project: Path) -> None:
    settings = load_settings(cwd=project)
    assert isinstance(settings, Settings)
    with pytest.raises(AttributeError):
        settings.backend = "memory"  # type: ignore[misc]


def test_backend_name_never_pairs_with_a_lower_layers_url_for_another_backend(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pyproject(project, '[tool.assetry]\nbackend_url = "memory://shared"\n')
    monkeypatch.setenv("ASSETRY_BACKEND", "sql")
    settings = load_settings(cwd=project)
    assert (settings.backend, settings.backend_url) == ("sql", None)
    assert settings.sources["backend"] == "environment ASSETRY_BACKEND"


def test_backend_name_borrows_a_lower_layers_url_for_the_same_backend(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pyproject(project, '[tool.assetry]\nbackend_url = "sqlite:///state.db"\n')
    monkeypatch.setenv("ASSETRY_BACKEND", "sql")
    settings = load_settings(cwd=project)
    assert (settings.backend, settings.backend_url) == ("sql", "sqlite:///state.db")
    assert settings.sources["backend_url"].endswith("pyproject.toml")


def test_a_higher_layers_url_replaces_a_lower_layers_backend(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pyproject(project, '[tool.assetry]\nbackend = "objectstore"\n')
    monkeypatch.setenv("ASSETRY_BACKEND_URL", "memory://x")
    settings = load_settings(cwd=project)
    assert (settings.backend, settings.backend_url) == (None, "memory://x")


@pytest.mark.parametrize("value", ["1.5", "true"])
def test_max_value_bytes_must_be_a_whole_number_in_files(project: Path, value: str) -> None:
    _write_pyproject(project, f"[tool.assetry]\nmax_value_bytes = {value}\n")
    with pytest.raises(ConfigurationError, match="whole number"):
        load_settings(cwd=project)


def test_file_backend_options_are_not_passed_to_a_backend_chosen_elsewhere(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pyproject(
        project,
        '[tool.assetry]\nbackend_url = "sqlite:///s.db"\n'
        "[tool.assetry.backend_options]\nbusy_timeout = 60\n",
    )
    monkeypatch.setenv("ASSETRY_BACKEND_URL", "memory://x")
    assert dict(load_settings(cwd=project).backend_options) == {}
    monkeypatch.delenv("ASSETRY_BACKEND_URL")
    assert dict(load_settings(cwd=project).backend_options) == {"busy_timeout": 60}


def test_file_backend_options_apply_to_the_same_backend_chosen_elsewhere(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pyproject(
        project,
        '[tool.assetry]\nbackend = "sql"\n[tool.assetry.backend_options]\nbusy_timeout = 60\n',
    )
    monkeypatch.setenv("ASSETRY_BACKEND_URL", "sqlite:///other.db")
    assert dict(load_settings(cwd=project).backend_options) == {"busy_timeout": 60}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"uri": 5}', "uri that is a int"),
        ('{"uri": ["postgresql://h/db"]}', "uri that is a list"),
    ],
)
def test_a_connection_uri_that_is_not_a_string_is_a_configuration_error(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Connection.parse("warehouse", text)


@pytest.mark.parametrize("port", ['"x"', '"5432x"', "[1]", "1.5e9x"])
def test_a_connection_port_that_is_not_a_number_is_a_configuration_error(port: str) -> None:
    if port == "1.5e9x":
        conn = Connection.parse("warehouse", "postgresql://h:5432/db?port=1.5e9x")
    else:
        conn = Connection.parse("warehouse", f'{{"host": "h", "port": {port}}}')
    with pytest.raises(ConfigurationError, match="'warehouse' has port"):
        conn.port  # noqa: B018 - the property raises


def test_a_connection_uri_that_cannot_be_parsed_is_a_configuration_error() -> None:
    conn = Connection.parse("warehouse", "postgresql://user:hunter2@[broken/db")
    for read in (lambda: conn.login, lambda: conn.storage_options, lambda: conn.port):
        with pytest.raises(ConfigurationError, match="'warehouse' has a URI") as caught:
            read()
        assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("password", ["Sup3r/Secret", "a#b?c/d", "p:w;x"])
def test_a_connection_uri_password_with_reserved_characters_is_read_whole(password: str) -> None:
    conn = Connection.parse(
        "pg", f"postgresql://etl:{password}@db.internal:5432/wh?sslmode=require"
    )
    assert (conn.login, conn.password, conn.host, conn.port) == (
        "etl",
        password,
        "db.internal",
        5432,
    )
    assert (conn.database, conn.get("sslmode")) == ("wh", "require")
    assert password not in repr(conn)
    url = conn.to_sqlalchemy_url(drivername="postgresql+psycopg")
    assert url.password == password and url.drivername == "postgresql+psycopg"


def test_database_url_with_a_lone_surrogate_is_a_configuration_error() -> None:
    from assetry.urls import parse_database_url

    with pytest.raises(ConfigurationError, match="valid Unicode") as info:
        parse_database_url("postgresql://etl:\ud800secret@127.0.0.1/db")
    assert "secret" not in str(info.value)
