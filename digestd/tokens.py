"""Signed links (feedback, unsubscribe) and private feed tokens.

Feedback and unsubscribe links are signed with itsdangerous, so the server keeps no table of them
and a tampered link is refused. Feed tokens are an HMAC of a random per-user nonce: unguessable
(256 bits), reproducible for the footer of each mail, and stored only as a SHA-256 hash so a copy of
the database alone does not reveal anyone's feed URL.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import NamedTuple

from itsdangerous import BadSignature, Serializer, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

from .errors import ConfigError, TokenError

VOTES = ("up", "down")
VIAS = ("email", "feed")


MIN_SECRET_BYTES = 32


def secret_key_problem(path: Path) -> str | None:
    """Why the key file at ``path`` cannot be used, or None (a missing one is created on first start)."""
    try:
        load_existing_secret(path)
    except ConfigError as e:
        return e.message
    return None


def load_existing_secret(path: Path) -> bytes | None:
    """The key held at ``path``; None when there is no file; a ``ConfigError`` naming the file
    when it is unreadable or too short."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read the secret key file {path}: {e.strerror or e}") from e
    if len(data) < MIN_SECRET_BYTES:
        raise ConfigError(f"the secret key file {path} holds {len(data)} bytes, fewer than {MIN_SECRET_BYTES}: "
                          "put a longer key there, or write a new one with `digestd rotate-secret-key` "
                          "(that invalidates every link sent so far)")
    return data


def load_or_create_secret(path: Path) -> bytes:
    """The signing key; created with 256 random bits on first start, readable by the owner only.

    A key file that exists is never replaced here, whatever it holds: every link in every mail
    sent so far depends on it. One too short or unreadable is an error naming the file; a new
    key is only ever written by ``rotate_secret`` (``digestd rotate-secret-key``)."""
    data = load_existing_secret(path)
    return _create_secret(path) if data is None else data


def _new_key() -> bytes:
    return secrets.token_hex(32).encode()


def _create_secret(path: Path) -> bytes:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_secret(path)      # another process created it just now: use theirs
    except OSError as e:
        raise ConfigError(f"cannot create the secret key file {path}: {e.strerror or e}") from e
    key = _new_key()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    return key


def rotate_secret(path: Path) -> bytes:
    """Write a new signing key in place of the old one (atomically, owner-only) and return it."""
    key = _new_key()
    tmp = path.with_name(path.name + ".new")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"cannot write the secret key file {path}: {e.strerror or e}") from e
    return key


class FeedbackLink(NamedTuple):
    user: str
    paper: str
    vote: str
    via: str          # where the link was given: "email" or "feed"


class _KeyOnceSigner(TimestampSigner):
    """Derives its HMAC key once, not on every signature (itsdangerous re-derives it each time)."""

    def derive_key(self, secret_key=None) -> bytes:
        if secret_key is not None:
            return super().derive_key(secret_key)
        key = self.__dict__.get("_derived")
        if key is None:
            key = self.__dict__["_derived"] = super().derive_key()
        return key


class _ShortPayloadSerializer(URLSafeTimedSerializer):
    """A link carries [user, paper, vote]: too short for zlib ever to shorten, yet itsdangerous tries
    on every link; and it builds a signer, and derives its key, for every link. A pass signs twenty
    links a reader, 200,000 for 10,000 readers, so both are done once. Links read the same either way."""

    default_signer = _KeyOnceSigner

    def dump_payload(self, obj) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))

    def make_signer(self, salt=None):
        cache = self.__dict__.setdefault("_signers", {})
        if salt not in cache:
            cache[salt] = super().make_signer(salt)
        return cache[salt]


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._feedback = _ShortPayloadSerializer(secret, salt="digestd.feedback")
        self._unsubscribe = _ShortPayloadSerializer(secret, salt="digestd.unsubscribe")
        self._press = _ShortPayloadSerializer(secret, salt="digestd.press")

    # -- feedback ------------------------------------------------------------------------------
    def feedback_token(self, user_id: str, paper_key: str, vote: str, via: str = "email") -> str:
        if vote not in VOTES or via not in VIAS:
            raise ValueError((vote, via))
        # A mail's links keep the three-item payload of earlier releases (and its length).
        return self._feedback.dumps([user_id, paper_key, vote] if via == "email" else [user_id, paper_key, vote, via])

    def read_feedback(self, token: str, max_age_seconds: int | None = None) -> tuple[str, str, str]:
        link = self.read_feedback_link(token, max_age_seconds)
        return link.user, link.paper, link.vote

    def read_feedback_link(self, token: str, max_age_seconds: int | None = None) -> FeedbackLink:
        try:
            payload = self._feedback.loads(token, max_age=max_age_seconds)
        except SignatureExpired as e:
            raise TokenError("this feedback link has expired") from e
        except (BadSignature, ValueError, TypeError) as e:
            raise TokenError("this feedback link is not valid (tampered or truncated)") from e
        if not isinstance(payload, list) or len(payload) not in (3, 4):
            raise TokenError("this feedback link is not valid (tampered or truncated)")
        user_id, paper_key, vote, via = (payload + ["email"])[:4]
        if vote not in VOTES or via not in VIAS or not isinstance(user_id, str) or not isinstance(paper_key, str):
            raise TokenError("this feedback link is not valid (tampered or truncated)")
        return FeedbackLink(user_id, paper_key, vote, via)

    # -- the form behind a feedback link -------------------------------------------------------
    def press_token(self, link_token: str) -> str:
        """The hidden field of the vote form a feedback page shows. A POST must carry it, so only a
        page this server rendered can record a vote: another site cannot read it (same-origin),
        and a link opened by a scanner records nothing because only a press sends the form."""
        return self._press.dumps(hash_token(link_token)[:32])

    def check_press(self, press: str, link_token: str, max_age_seconds: int | None = None) -> None:
        try:
            bound = self._press.loads(press, max_age=max_age_seconds)
        except SignatureExpired as e:
            raise TokenError("this page is too old; open the link from the mail again") from e
        except (BadSignature, ValueError, TypeError) as e:
            raise TokenError("this vote was not sent from the digestd page of this link") from e
        if not isinstance(bound, str) or not tokens_equal(bound, hash_token(link_token)[:32]):
            raise TokenError("this vote was not sent from the digestd page of this link")

    # -- unsubscribe ---------------------------------------------------------------------------
    def unsubscribe_token(self, user_id: str) -> str:
        return self._unsubscribe.dumps(user_id)

    def read_unsubscribe(self, token: str) -> str:
        # Unsubscribe links never expire: a years-old mail must still be able to stop the mail.
        try:
            user_id = self._unsubscribe.loads(token)
        except (BadSignature, ValueError, TypeError) as e:
            raise TokenError("this unsubscribe link is not valid (tampered or truncated)") from e
        if not isinstance(user_id, str):
            raise TokenError("this unsubscribe link is not valid (tampered or truncated)")
        return user_id

    # -- feeds ---------------------------------------------------------------------------------
    def feed_token(self, user_id: str, nonce: str) -> str:
        mac = hmac.new(self._secret, f"feed\0{user_id}\0{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def new_nonce() -> str:
    return secrets.token_hex(16)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
