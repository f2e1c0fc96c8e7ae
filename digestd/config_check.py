"""What `load_config` checks beyond the schema: where each problem is in the file, a fix for it, and
whether what `run` will need is really there (password, data directory, replay directories, DKIM key).

Every command loads the config through these checks, so nothing that `check-config` passes fails
later for a reason it could have seen. Secrets are read to be checked, never printed.
"""
from __future__ import annotations

import difflib
import os
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace

from .errors import ConfigError, line_of  # noqa: F401  (line_of: for callers)

Problem = tuple[str, str]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r'^\s*(["\']?)([A-Za-z0-9_\-]+)\1\s*=')


def key_lines(text: str) -> dict[str, int]:
    """Line number of every table and key of a TOML text, by key path (``users[2].timezone``).
    tomllib keeps no positions; digestd's config is flat enough for a line scan."""
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    table = ""
    in_string = False
    for n, line in enumerate(text.splitlines(), 1):
        # A key = value inside a multi-line string is text, not a key.
        if line.count('"""') % 2 or line.count("'''") % 2:
            in_string = not in_string
            if not in_string:
                continue
        if in_string:
            continue
        m = _HEADER.match(line)
        if m:
            name = m.group(2)
            if m.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                table = f"{name}[{counts[name]}]"
            else:
                table = name
            lines.setdefault(table, n)
            continue
        m = _KEY.match(line)
        if m:
            lines.setdefault(f"{table}.{m.group(2)}" if table else m.group(2), n)
    return lines


def _keys_at(path: str, tables: dict) -> list[str] | None:
    """The keys the table holding ``path`` accepts, for "did you mean". ``tables``: table name -> its
    pydantic model, "" the top level (config.py hands them over, so this module does not import it)."""
    parent = re.sub(r"\[\d+\]", "", path.rpartition(".")[0])
    model = tables.get(parent)
    if model is None:
        return None
    return [f.alias or name for name, f in model.model_fields.items() if not f.exclude]


def did_you_mean(path: str, tables: dict) -> str:
    """The fix for an unknown key: the closest known key, else the list of known ones."""
    known = _keys_at(path, tables)
    if not known:
        return "remove it"
    key = path.rpartition(".")[2]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "remove it; known keys here: " + ", ".join(known)


# -- the schema's problems, as (key path, message) with a fix ---------------------------------------
def _loc_to_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def problems_from(err, tables: dict) -> list[tuple[str, str]]:
    """``err``: pydantic's ValidationError; ``tables``: as ``_keys_at`` takes them."""
    problems: list[tuple[str, str]] = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if p not in ("function-after", "function-before"))
        path = _loc_to_path(loc)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key; {did_you_mean(path, tables)}"
        elif e["type"] == "missing":
            msg = f"required key is missing; fix: add {path.rpartition('.')[2]} = ..."
        # A cross-check error carries several "path: message" lines of its own.
        for line in msg.split("\n"):
            sub, sep, rest = line.partition(": ")
            if sep and re.fullmatch(r"[\w\[\].]+", sub) and not path:
                problems.append((sub, rest))
            else:
                problems.append((path, line))
    return problems


# -- checks on the raw TOML, so they run even when the schema finds other problems --------------
def cross_checks(data: dict) -> list[Problem]:
    """Duplicate names and references to unknown sources, from the raw data: the schema's own
    cross-checks only run once every field is valid, and `check-config` lists every problem at once."""
    problems: list[Problem] = []
    sources = data.get("sources") if isinstance(data.get("sources"), list) else []
    users = data.get("users") if isinstance(data.get("users"), list) else []
    names = [s.get("name") if isinstance(s, dict) else None for s in sources]
    for i, n in enumerate(names):
        if isinstance(n, str) and names.index(n) != i:
            problems.append((f"sources[{i}].name", f"duplicate source name {n!r}"))
    for i, src in enumerate(sources):
        # The schema checks these only once every other field of the source is valid.
        if isinstance(src, dict):
            for kind, key, msg in (("arxiv", "categories", 'type arxiv needs categories, e.g. ["cs.LG"]'),
                                   ("feed", "url", "type feed needs url"), ("replay", "path", "type replay needs path")):
                if src.get("type") == kind and not src.get(key):
                    problems.append((f"sources[{i}]", msg))
    first: dict[str, int] = {}          # id -> its first index: one pass, even for 100,000 readers
    for i, u in enumerate(users):
        if not isinstance(u, dict):
            continue
        uid = u.get("id")
        if isinstance(uid, str) and first.setdefault(uid, i) != i:
            problems.append((f"users[{i}].id", f"duplicate user id {uid!r}"))
        refs = u.get("sources")
        for j, s in enumerate(refs if isinstance(refs, list) else []):
            if s not in names:
                close = difflib.get_close_matches(str(s), [n for n in names if isinstance(n, str)], n=1)
                problems.append((f"users[{i}].sources[{j}]", f"no source named {s!r}"
                                 + (f" (did you mean {close[0]!r}?)" if close else "")))
    return problems


# -- what `run` will need -----------------------------------------------------------------------
def _writable_dir(path: Path) -> str | None:
    """Why ``path`` cannot be created and written, or None. Probes with a real file: permission
    bits say nothing to root, and nothing about a read-only mount."""
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create {path}: {existing} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".digestd-probe-"):
            pass
    except OSError as e:
        verb = "write to" if existing == path else f"create {path} in"
        return f"cannot {verb} {existing}: {e.strerror or e}"
    return None


def read_password(smtp) -> str | None:
    """The SMTP password as configured (``password_env`` first), None when none is configured.
    A configured but unavailable password is a ``ConfigError`` naming the key, never an SMTP error."""
    problem = password_problem(smtp)
    if problem:
        raise ConfigError(problem[1], [problem])
    if smtp.password_env:
        return os.environ[smtp.password_env]
    if smtp.password_file:
        return Path(smtp.password_file).read_text(encoding="utf-8").splitlines()[0].strip()
    return None


def password_problem(smtp) -> Problem | None:
    if smtp.password_env:
        if not os.environ.get(smtp.password_env):
            return ("smtp.password_env", f"environment variable {smtp.password_env} is not set or empty; "
                    f"fix: set it in digestd's environment (systemd: Environment= or EnvironmentFile=)")
        return None
    if smtp.password_file:
        try:
            text = Path(smtp.password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            return ("smtp.password_file", f"cannot read {smtp.password_file}: {getattr(e, 'strerror', None) or e}; "
                    "fix: create it with the password on its first line, readable by digestd")
        if not text.strip() or not text.splitlines()[0].strip():
            return ("smtp.password_file", f"{smtp.password_file} is empty (the password is its first line)")
        return None
    if smtp.username:
        return ("smtp.username", "a username is set but no password; fix: set password_env or password_file")
    return None


def _resolve(p: str, config_dir: Path) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else config_dir / path


def runtime_problems(data: dict, config_dir: Path) -> list[Problem]:
    """Everything `run` needs from outside the file: checked by every command, listed all at once.
    Works on the raw TOML, so these are listed beside the schema's problems, not after them."""
    problems: list[Problem] = []

    def table(v) -> dict:
        return v if isinstance(v, dict) else {}

    def text(t: dict, key: str, default: str = "") -> str:
        v = t.get(key, default)
        return v if isinstance(v, str) else default

    data_dir = text(table(data.get("digestd")), "data_dir", "var")
    why = _writable_dir(_resolve(data_dir, config_dir))
    if why:
        problems.append(("digestd.data_dir", why))
    from .tokens import secret_key_problem

    key_file = text(table(data.get("digestd")), "secret_key_file")
    why = secret_key_problem(_resolve(key_file, config_dir) if key_file else _resolve(data_dir, config_dir) / "secret.key")
    if why:
        problems.append(("digestd.secret_key_file", why))
    if isinstance(data.get("smtp"), dict):
        raw = data["smtp"]
        smtp = SimpleNamespace(username=text(raw, "username"), password_env=text(raw, "password_env"),
                               password_file=text(raw, "password_file"))
        if smtp.password_file:
            smtp.password_file = str(_resolve(smtp.password_file, config_dir))
        p = password_problem(smtp)
        if p:
            problems.append(p)
        if text(raw, "dkim_key_file"):
            from .dkim_sign import key_problem

            why = key_problem(_resolve(text(raw, "dkim_key_file"), config_dir))
            if why:
                problems.append(("smtp.dkim_key_file", why))
    sources = data.get("sources") if isinstance(data.get("sources"), list) else []
    for i, src in enumerate(sources):
        src = table(src)
        if src.get("type") == "replay" and src.get("enabled", True) is not False and text(src, "path"):
            path = _resolve(text(src, "path"), config_dir)
            if not path.is_dir():
                problems.append((f"sources[{i}].path", f"replay directory not found: {path}"))
    return problems
