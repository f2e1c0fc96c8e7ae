"""Remember which model file already hashed to the pinned sha256, so a start need not hash it again.

Hashing the 23 MB model took about a tenth of a second at every start of every command, to answer
a question whose answer changes only when the file does. The stamp kept for a good file is its
stat: device, inode, size, and modification and change times in nanoseconds. Rewriting, truncating,
replacing or ``touch``-ing the file changes the change time (which no unprivileged process can set
back), so a different file is hashed in full and refused in the usual one line.

The stamps live in ``$XDG_CACHE_HOME/digestd/model-check.json`` (else ``~/.cache/digestd``). Only a
cache: unreadable, unwritable or damaged, the file is hashed as before.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def cache_dir() -> Path:
    """digestd's per-user cache: ``$XDG_CACHE_HOME/digestd``, else ``~/.cache/digestd``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "digestd"


def stamps_path() -> Path:
    return cache_dir() / "model-check.json"


def _stamp(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _read() -> dict:
    try:
        got = json.loads(stamps_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def known_good(path: Path, sha256: str) -> bool:
    """Whether ``path`` is, by its stat, the very file that last hashed to ``sha256``."""
    stamp = _stamp(path)
    entry = _read().get(str(Path(path).resolve()))
    return (stamp is not None and isinstance(entry, dict) and entry.get("sha256") == sha256
            and entry.get("stat") == stamp)


def remember_good(path: Path, sha256: str) -> None:
    """Keep the stamp of a file that just hashed to ``sha256``; never fails (a cache)."""
    stamp = _stamp(path)
    if stamp is None:
        return
    stamps = _read()
    stamps[str(Path(path).resolve())] = {"sha256": sha256, "stat": stamp}
    target = stamps_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stamps), encoding="utf-8")
        os.replace(tmp, target)             # atomic: two processes starting together never mix
    except OSError:
        pass
