"""check-config checks what `run` will need, lists every problem with its line and a fix, and every
command goes through the same checks: nothing it passes fails later with a traceback."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from digestd import pipeline
from digestd.app import build_app
from digestd.config import load_config, parse_config
from digestd.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
LISTS = REPO / "examples" / "lists"


def digestd(cfg: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digestd", "--config", str(cfg), *args], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=300)


def write(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "digestd.toml"
    cfg.write_text(textwrap.dedent(text))
    return cfg


def lists(tmp_path: Path) -> Path:
    """Two days of the demo's saved arXiv lists."""
    d = tmp_path / "lists"
    d.mkdir()
    for day in ("2025-05-19", "2025-05-20"):
        shutil.copy(LISTS / "arxiv" / f"{day}.atom", d)
    return d


BAD = """\
[digestd]
data_dir = "var"
colour = "blue"

[smtp]
host = "127.0.0.1"
from = "digest@example.org"
username = "digest"
password_file = "missing-password"

[[sources]]
name = "arxiv"
type = "arxiv"
categories = ["cs.LG"]

[[sources]]
name = "arxiv"
type = "replay"
path = "nowhere"

[[users]]
id = "alice"
email = "alice@example.org"
timzone = "Europe/Berlin"
send_at = "25:00"
sources = ["arxv"]
"""


def test_check_config_lists_every_problem_with_its_line_and_a_fix(tmp_path):
    cfg = write(tmp_path, BAD)
    r = digestd(cfg, "check-config")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    expected = {
        3: "digestd.colour: unknown key",
        9: "smtp.password_file: cannot read",
        17: "sources[1].name: duplicate source name 'arxiv'",
        19: "sources[1].path: replay directory not found",
        24: "users[0].timzone: unknown key; did you mean 'timezone'?",
        25: "users[0].send_at: must be HH:MM",
        26: "users[0].sources[0]: no source named 'arxv' (did you mean 'arxiv'?)",
    }
    for n, text in expected.items():
        assert any(line.startswith(f"{cfg}:{n}: {text}") for line in lines), (n, text, r.stderr)
    assert lines[-1] == f"digestd: 7 problems in {cfg}"


def test_a_missing_or_empty_password_file_and_an_unset_password_env_are_errors(tmp_path, monkeypatch):
    base = """
    [smtp]
    host = "127.0.0.1"
    from = "digest@example.org"
    username = "digest"
    {how}
    """
    cfg = write(tmp_path, base.format(how='password_file = "pw"'))
    with pytest.raises(ConfigError) as e:
        load_config(str(cfg))
    assert [k for k, _ in e.value.problems] == ["smtp.password_file"] and "No such file" in str(e.value)

    (tmp_path / "pw").write_text("\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(cfg))
    assert "is empty" in str(e.value)

    (tmp_path / "pw").write_text("hunter2\n")   # relative to the config file, not to the working directory
    monkeypatch.chdir("/")
    assert load_config(str(cfg)).smtp.password() == "hunter2"

    cfg = write(tmp_path, base.format(how='password_env = "DIGESTD_TEST_UNSET_PASSWORD"'))
    monkeypatch.delenv("DIGESTD_TEST_UNSET_PASSWORD", raising=False)
    r = digestd(cfg, "check-config")
    assert r.returncode == 2
    assert "smtp.password_env: environment variable DIGESTD_TEST_UNSET_PASSWORD is not set" in r.stderr
    r = digestd(cfg, "check-config", env={"DIGESTD_TEST_UNSET_PASSWORD": "s3cret-value"})
    assert r.returncode == 0 and "s3cret-value" not in r.stdout + r.stderr


def test_a_password_is_never_printed_even_beside_other_problems(tmp_path):
    (tmp_path / "pw").write_text("hunter2\n")
    cfg = write(tmp_path, """
    [smtp]
    host = "127.0.0.1"
    from = "digest@example.org"
    username = "digest"
    password_file = "pw"
    port = 0
    """)
    r = digestd(cfg, "check-config")
    assert r.returncode == 2 and "smtp.port" in r.stderr and "hunter2" not in r.stdout + r.stderr


def test_a_data_dir_that_cannot_be_created_is_one_line_on_every_command(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    cfg = write(tmp_path, """
    [digestd]
    data_dir = "a-file/var"

    [[users]]
    id = "alice"
    email = "alice@example.org"
    """)
    for args in (["check-config"], ["status"], ["run"], ["run", "--once"], ["send"], ["export", "alice"]):
        r = digestd(cfg, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr
        problem = [line for line in r.stderr.splitlines() if "digestd.data_dir" in line]
        assert len(problem) == 1 and "a-file is not a directory" in problem[0], (args, r.stderr)


def test_a_data_dir_made_unwritable_after_the_check_is_a_clean_error_when_building_the_app(tmp_path):
    (tmp_path / "a-file").write_text("")
    settings = parse_config('[digestd]\ndata_dir = "a-file/var"\n', config_dir=tmp_path)
    with pytest.raises(ConfigError) as e:
        build_app(settings)
    assert e.value.problems[0][0] == "digestd.data_dir"


def test_a_replay_path_that_does_not_exist_is_a_config_error_and_never_a_successful_fetch(tmp_path, clock):
    cfg = write(tmp_path, """
    [[sources]]
    name = "saved"
    type = "replay"
    path = "no-such-lists"
    """)
    with pytest.raises(ConfigError) as e:
        load_config(str(cfg))
    assert [k for k, _ in e.value.problems] == ["sources[0].path"]
    # The directory went away after the check: the fetch fails and says so; it is no success with 0 papers.
    app = build_app(parse_config(cfg.read_text(), config_dir=tmp_path), clock=clock)
    try:
        out = pipeline.fetch_all(app)
        assert out[0].error and "replay directory not found" in out[0].error
        state = app.store.source_state("saved")
        assert state.last_success_at is None and state.error_count == 1
    finally:
        app.close()


def test_a_disabled_replay_source_may_point_nowhere(tmp_path):
    cfg = write(tmp_path, """
    [[sources]]
    name = "saved"
    type = "replay"
    path = "no-such-lists"
    enabled = false
    """)
    assert load_config(str(cfg)).sources[0].name == "saved"


def test_partial_dkim_settings_and_a_bad_key_file_are_errors(tmp_path):
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    cfg = write(tmp_path, """
    [smtp]
    host = "127.0.0.1"
    from = "digest@example.org"
    dkim_selector = "mail"
    dkim_key_file = "key.pem"
    """)
    r = digestd(cfg, "check-config")
    assert r.returncode == 2
    assert "missing dkim_domain" in r.stderr
    assert "smtp.dkim_key_file:" in r.stderr and "not a PEM RSA private key" in r.stderr


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_smtp_password_gone_at_send_time_leaves_the_digest_pending(tmp_path, clock, monkeypatch):
    from aiosmtpd.smtp import AuthResult
    from smtp_recorder import Recorder, start

    rec = Recorder()
    server = start(rec, authenticator=lambda *a: AuthResult(success=a[-1].password == b"s3cret", handled=False),
                   auth_required=True, auth_require_tls=False)
    monkeypatch.setenv("DIGESTD_TEST_SMTP_PASSWORD", "s3cret")
    cfg = write(tmp_path, f"""
    [smtp]
    host = "127.0.0.1"
    port = {server.port}
    security = "none"
    username = "digest"
    password_env = "DIGESTD_TEST_SMTP_PASSWORD"
    from = "digest@example.org"

    [[sources]]
    name = "arxiv"
    type = "replay"
    path = "{lists(tmp_path)}"

    [[users]]
    id = "alice"
    email = "alice@example.org"
    send_at = "07:00"
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    keywords = ["language models"]
    """)
    app = build_app(load_config(str(cfg)), clock=clock)
    try:
        pipeline.fetch_all(app)
        monkeypatch.delenv("DIGESTD_TEST_SMTP_PASSWORD")
        for _ in range(2):   # neither "refused by the mail server" nor, the next time, "already"
            with pytest.raises(ConfigError) as e:
                pipeline.deliver_due(app)
            assert "DIGESTD_TEST_SMTP_PASSWORD" in str(e.value)
            row = app.store.digest_rows([("alice", clock.now().date())]).get(("alice", clock.now().date()))
            assert row is None or row.status in ("retry", "claimed") and row.sent_at is None
        monkeypatch.setenv("DIGESTD_TEST_SMTP_PASSWORD", "s3cret")
        out = pipeline.deliver_due(app)
        assert [o.status for o in out] == ["sent"] and rec.recipients() == ["alice@example.org"]
    finally:
        app.close()
        server.stop()
