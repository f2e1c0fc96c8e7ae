"""DKIM signing of finished messages (dkimpy), used by the mailers in mail.py just before a message
is handed over, so what a Maildir stores is byte for byte what SMTP would send.

The signature covers the headers a receiver judges a digest by (From, To, Subject, Date,
Message-ID, List-Id, List-Unsubscribe and its -Post, the MIME headers) and the body, with relaxed
canonicalization so that re-folding by a relay does not break it.
"""
from __future__ import annotations

import email.parser
import email.policy
from pathlib import Path

import dkim
from dkim import crypto as dkim_crypto

from .errors import ConfigError

SIGNED_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
                  "List-Unsubscribe-Post", "MIME-Version", "Content-Type")


def key_problem(path: str | Path) -> str | None:
    """Why the file at ``path`` is not a usable DKIM private key, or None."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"cannot read {path}: {e.strerror or e}"
    try:
        dkim_crypto.parse_pem_private_key(data.replace(b"\r\n", b"\n"))
    except (dkim_crypto.UnparsableKeyError, ValueError, IndexError) as e:
        return f"{path} is not a PEM RSA private key (PKCS#1 or PKCS#8): {str(e).splitlines()[0]}"
    return None


class DkimSigner:
    """Signs RFC 5322 bytes as ``selector._domainkey.domain``."""

    def __init__(self, selector: str, domain: str, key_file: str | Path) -> None:
        why = key_problem(key_file)
        if why:
            raise ConfigError(why, [("smtp.dkim_key_file", why)])
        self.selector, self.domain = selector.encode(), domain.encode()
        self.key = Path(key_file).read_bytes().replace(b"\r\n", b"\n")

    @classmethod
    def from_settings(cls, smtp) -> "DkimSigner | None":
        if smtp is None or not smtp.dkim_key_file:
            return None
        return cls(smtp.dkim_selector, smtp.dkim_domain, smtp.dkim_key_file)

    def sign(self, raw: bytes) -> bytes:
        """``raw`` with a DKIM-Signature header in front, in the message's own line ends."""
        crlf = raw[:raw.find(b"\n") + 1].endswith(b"\r\n")
        present = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw).keys()
        lower = {h.lower() for h in present}
        headers = [h.encode() for h in SIGNED_HEADERS if h.lower() in lower]
        try:
            sig = dkim.sign(raw, self.selector, self.domain, self.key, include_headers=headers,
                            canonicalize=(b"relaxed", b"relaxed"), linesep=b"\r\n" if crlf else b"\n")
        except dkim.DKIMException as e:
            raise ConfigError(f"DKIM signing failed: {e}", [("smtp.dkim_key_file", f"DKIM signing failed: {e}")]) from e
        if crlf and not sig.endswith(b"\r\n"):
            sig = sig.rstrip(b"\n") + b"\r\n"
        return sig + raw
