import re
import subprocess
import sys
from pathlib import Path

import pytest

from digestd.config import documented_keys, load_config, parse_config
from digestd.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

GOOD = """
[digestd]
data_dir = "var"

[[sources]]
name = "arxiv"
type = "arxiv"
categories = ["cs.LG"]

[[users]]
id = "alice"
email = "alice@example.org"
timezone = "Europe/Berlin"
send_at = "7:30"
days = ["Mon", "tue"]
seed_papers = ["https://arxiv.org/abs/2401.01234v2"]
"""


def test_it_accepts_the_example_in_the_design_contract(tmp_path):
    s = parse_config(GOOD, config_dir=tmp_path)
    u = s.users[0]
    assert u.send_at == "07:30" and u.days == ["mon", "tue"]
    assert u.seed_papers == ["2401.01234"]
    assert s.database_url == f"sqlite:///{tmp_path / 'var' / 'digestd.db'}"
    assert s.sources[0].announce_types == ["new", "cross"]


def test_it_reports_every_problem_with_its_key_path(tmp_path):
    bad = GOOD.replace('timezone = "Europe/Berlin"', 'timezone = "Europe/Berln"').replace(
        'send_at = "7:30"', 'send_at = "25:00"') + '\n[[users]]\nid = "bob"\nemail = "nope"\nsources = ["missing"]\ncolour = 1\n'
    with pytest.raises(ConfigError) as e:
        parse_config(bad, config_dir=tmp_path)
    keys = {k for k, _ in e.value.problems}
    assert {"users[0].timezone", "users[0].send_at", "users[1].email", "users[1].colour"} <= keys
    assert "Europe/Berln" in str(e.value)


def test_it_reports_cross_reference_and_duplicate_errors_with_paths(tmp_path):
    bad = GOOD + '\n[[users]]\nid = "alice"\nemail = "a@b.c"\nsources = ["nowhere"]\n'
    with pytest.raises(ConfigError) as e:
        parse_config(bad, config_dir=tmp_path)
    keys = {k for k, _ in e.value.problems}
    assert "users[1].id" in keys and "users[1].sources[0]" in keys


def test_it_refuses_a_password_written_into_the_config(tmp_path):
    bad = GOOD + '\n[smtp]\nhost = "h"\nfrom = "x@y.z"\npassword = "hunter2"\n'
    with pytest.raises(ConfigError) as e:
        parse_config(bad, config_dir=tmp_path)
    assert "password_env" in str(e.value)
    assert "hunter2" not in str(e.value)


def test_it_reports_broken_toml_with_the_line(tmp_path):
    with pytest.raises(ConfigError) as e:
        parse_config("[digestd\n", config_dir=tmp_path, path="x.toml")
    assert "x.toml" in str(e.value) and "line 1" in str(e.value)


def test_check_config_exits_2_and_prints_each_problem(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(GOOD.replace('email = "alice@example.org"', 'email = "alice"'))
    r = subprocess.run([sys.executable, "-m", "digestd", "--config", str(cfg), "check-config"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    assert "users[0].email" in r.stderr


def test_a_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "nope.toml"))
    assert "nope.toml" in str(e.value)


def test_every_setting_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    missing = [f"{table}.{key}" for table, keys in documented_keys().items() for key in keys
               if not re.search(rf"`{re.escape(key)}`", readme)]
    assert not missing, f"README does not document: {missing}"


def test_every_setting_has_help_text():
    assert all(help_ for keys in documented_keys().values() for help_ in keys.values())


def test_the_demo_config_is_valid():
    s = load_config(str(REPO / "examples" / "demo.toml"))
    assert len(s.users) >= 3 and all(src.type == "replay" for src in s.sources)


def test_a_source_schedule_takes_crontab_day_numbers_and_rejects_nonsense(tmp_path):
    ok = GOOD.replace('categories = ["cs.LG"]', 'categories = ["cs.LG"]\nschedule = "30 5 * * 0,7"')
    assert parse_config(ok, config_dir=tmp_path).sources[0].schedule == "30 5 * * 0,7"
    bad = GOOD.replace('categories = ["cs.LG"]', 'categories = ["cs.LG"]\nschedule = "every morning"')
    with pytest.raises(ConfigError) as e:
        parse_config(bad, config_dir=tmp_path)
    assert [k for k, _ in e.value.problems] == ["sources[0].schedule"]
