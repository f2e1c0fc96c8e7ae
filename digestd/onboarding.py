"""`digestd init`: a commented starter config, from flags or, in a terminal, from three questions.

The starter is the smallest config that delivers a real digest: the live Hugging Face and arXiv
lists, mail to the Maildir outbox until an [smtp] table is added, and one reader. Every other key
is in config.example.toml with its help text.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import DigestdError

DEFAULT_CATEGORIES = ["cs.LG", "cs.CL"]
_CATEGORY = re.compile(r"^[a-z\-]+(\.[A-Za-z\-]+)?$")


class InitError(DigestdError):
    """`digestd init` cannot write the config (it exists, or an answer is not usable)."""


@dataclass
class Answers:
    email: str = ""
    interests: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    name: str = ""


def split_list(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


def check(a: Answers) -> Answers:
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", a.email or ""):
        raise InitError(f"--email: not an email address: {a.email!r} (e.g. --email you@example.org)")
    bad = [c for c in a.categories if not _CATEGORY.match(c)]
    if bad:
        raise InitError(f"--categories: not arXiv categories: {', '.join(bad)} (e.g. --categories cs.LG,cs.CL)")
    return a


def ask(a: Answers, prompt: Callable[[str], str]) -> Answers:
    """Fill what the flags left out by asking (only called when stdin is a terminal)."""
    if not a.email:
        a.email = prompt("Your email address (where the digest goes): ").strip()
    if not a.name:
        a.name = prompt("Your name, for the greeting (Enter to skip): ").strip()
    if not a.interests:
        a.interests = split_list(prompt("Your interests, comma-separated (e.g. dense retrieval, RLHF): "))
    if not a.categories:
        got = split_list(prompt(f"arXiv categories, comma-separated [{', '.join(DEFAULT_CATEGORIES)}]: "))
        a.categories = got or list(DEFAULT_CATEGORIES)
    return a


def _toml_list(items: list[str]) -> str:
    return json.dumps(items, ensure_ascii=False)


def starter_config(a: Answers) -> str:
    user_id = re.sub(r"[^A-Za-z0-9_.\-]", "-", a.email.split("@")[0]) or "me"
    categories = a.categories or DEFAULT_CATEGORIES
    return f'''# digestd config, written by `digestd init`. Every key, with its default and meaning, is in
# config.example.toml and in the README's configuration reference. Check it: digestd check-config

[digestd]
data_dir = "var"                      # database, Maildir outbox and secret key, next to this file
base_url = "http://127.0.0.1:8080"    # the address readers reach the server at: links in mail and feeds
listen = "127.0.0.1:8080"             # where `digestd run` serves feeds, votes and profile pages

# No [smtp] table: every digest is written to the Maildir var/outbox/new. To send real mail:
# [smtp]
# host = "smtp.example.org"
# port = 587
# security = "starttls"               # starttls | ssl | none
# username = "digest"
# password_env = "DIGESTD_SMTP_PASSWORD"   # the password comes from the environment, never from here
# from = "Paper digest <digest@example.org>"

[[sources]]
name = "hf"
type = "hf_daily"                     # Hugging Face Daily Papers

[[sources]]
name = "arxiv"
type = "arxiv"                        # the new papers of these arXiv categories, every weekday
categories = {_toml_list(categories)}

[[users]]
id = "{user_id}"
email = "{a.email}"
# The name the greeting uses.
name = {json.dumps(a.name, ensure_ascii=False)}
timezone = "UTC"                      # an IANA name, e.g. Europe/Berlin; send_at is local time there
send_at = "07:30"
digest_size = 10
# Cold start: what you are interested in; your 👍 and 👎 take over from here.
keywords = {_toml_list(a.interests)}
'''


def write(path: Path, text: str, force: bool) -> None:
    if path.exists() and not force:
        raise InitError(f"{path} already exists; not overwriting it (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
