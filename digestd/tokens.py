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

from itsdangerous import BadSignature, Serializer, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

from .errors import TokenError

VOTES = ("up", "down")


def load_or_create_secret(path: Path) -> bytes:
    """The signing key; created with 256 random bits on first start, readable by the owner only."""
    try:
        data = path.read_bytes().strip()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.replace(tmp, path)
    return key


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

    # -- feedback ------------------------------------------------------------------------------
    def feedback_token(self, user_id: str, paper_key: str, vote: str) -> str:
        if vote not in VOTES:
            raise ValueError(vote)
        return self._feedback.dumps([user_id, paper_key, vote])

    def read_feedback(self, token: str, max_age_seconds: int | None = None) -> tuple[str, str, str]:
        try:
            user_id, paper_key, vote = self._feedback.loads(token, max_age=max_age_seconds)
        except SignatureExpired as e:
            raise TokenError("this feedback link has expired") from e
        except (BadSignature, ValueError, TypeError) as e:
            raise TokenError("this feedback link is not valid (tampered or truncated)") from e
        if vote not in VOTES:
            raise TokenError("this feedback link is not valid (tampered or truncated)")
        return user_id, paper_key, vote

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
