"""The one exception tree of digestd.

    DigestdError                      every error digestd raises on purpose
    ├── ConfigError                   the config file is missing, unreadable or invalid (carries every problem)
    ├── SourceError                   concerns one source (``source``)
    │   ├── FetchError                the network or the server failed (timeouts, 4xx/5xx, 429)
    │   └── ParseError                the bytes are not a list digestd understands
    ├── UserError                     concerns one user (``user``): unknown user, bad import file
    │   └── ImportFileError           a liked-papers file that cannot be read
    ├── PaperNotFound                 a paper id nobody has listed (``paper``)
    ├── StoreError                    the database refused or is unreachable
    ├── StoredModelError              a stored profile model cannot be read (``user``): it is retrained
    ├── RenderError                   a digest could not be rendered into a message (``user``): retried
    ├── DeliveryError                 mail could not be handed over (``user``)
    │   ├── TemporaryDeliveryError    4xx, disconnects: retry with backoff
    │   └── PermanentDeliveryError    5xx: record on the digest, do not retry
    └── TokenError                    a feedback/unsubscribe/feed token is tampered, expired or unknown

Third-party errors are wrapped at the boundary: ``raise FetchError(...) from e``.
"""
from __future__ import annotations


class DigestdError(Exception):
    """Base of every error digestd raises on purpose; ``str()`` is one line for the user."""

    def __init__(self, message: str, **ids: object) -> None:
        super().__init__(message)
        self.message = message
        self.ids = {k: v for k, v in ids.items() if v is not None}

    def __str__(self) -> str:
        where = " ".join(f"{k}={v}" for k, v in self.ids.items())
        return f"{self.message} ({where})" if where else self.message


class ConfigError(DigestdError):
    """The config is invalid; ``problems`` holds every ``(key path, message)``, ``lines`` the line
    of each key path in the file (``str()`` gives one ``file:line: key: message`` line a problem)."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None, path: str | None = None,
                 lines: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []
        self.path = path
        self.lines = lines or {}

    def line(self, key: str) -> int | None:
        return line_of(key, self.lines) if key else None

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        out = []
        # In the order of the file: a problem without a line (the file as a whole) first.
        for key, msg in sorted(self.problems, key=lambda p: self.line(p[0]) or 0):
            n = self.line(key)
            where = ":".join(str(x) for x in (self.path, n) if x is not None) if self.path else (f"line {n}" if n else "")
            out.append(": ".join(x for x in (where, key, msg) if x))
        return "\n".join(out)


def line_of(path: str, lines: dict[str, int]) -> int | None:
    """The line of key ``path``, else of the nearest enclosing key or table that the file has."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


class SourceError(DigestdError):
    def __init__(self, message: str, source: str | None = None, **ids: object) -> None:
        super().__init__(message, source=source, **ids)
        self.source = source


class FetchError(SourceError):
    """The network or the server failed. ``retry_after`` is seconds the server asked us to wait."""

    def __init__(self, message: str, source: str | None = None, url: str | None = None,
                 status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, source=source, url=url, status=status)
        self.url = url
        self.status = status
        self.retry_after = retry_after


class ParseError(SourceError):
    pass


class UserError(DigestdError):
    def __init__(self, message: str, user: str | None = None, **ids: object) -> None:
        super().__init__(message, user=user, **ids)
        self.user = user


class ImportFileError(UserError):
    pass


class PaperNotFound(DigestdError):
    def __init__(self, message: str, paper: str | None = None) -> None:
        super().__init__(message, paper=paper)
        self.paper = paper


class StoreError(DigestdError):
    pass


class StoredModelError(DigestdError):
    def __init__(self, message: str, user: str | None = None) -> None:
        super().__init__(message, user=user)
        self.user = user


class RenderError(DigestdError):
    def __init__(self, message: str, user: str | None = None, **ids: object) -> None:
        super().__init__(message, user=user, **ids)
        self.user = user


class DeliveryError(DigestdError):
    def __init__(self, message: str, user: str | None = None, **ids: object) -> None:
        super().__init__(message, user=user, **ids)
        self.user = user


class TemporaryDeliveryError(DeliveryError):
    pass


class PermanentDeliveryError(DeliveryError):
    pass


class TokenError(DigestdError):
    pass
