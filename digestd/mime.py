"""RFC 5322 bytes for a rendered digest: headers and quoted-printable parts, built directly.

The stdlib's pure-Python folding and quoted-printable cost more than rendering the digest; the body
goes through the C ``binascii.b2a_qp``; headers are ASCII by construction, except From, To and
Subject, which take the stdlib's RFC 2047 encoding when they need it.
"""
from __future__ import annotations

import binascii
import email.policy
import functools
import secrets

# quoted-printable, not 8bit: some relays lack 8BITMIME, and inlined HTML has very long lines.
_PART_HEADERS = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
_SMTP_POLICY = email.policy.SMTP
_MAX_LINE = 998            # RFC 5322 2.1.1, octets before CRLF
_FOLD_AT = 78              # RFC 5322 2.1.1: lines SHOULD be no longer


def _qp_body(s: str) -> bytes:
    # One CRLF after every line, the last one included, as EmailMessage.set_content does.
    data = b"\r\n".join(s.encode("utf-8").splitlines()) + b"\r\n"
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)


def _boundary(*parts: bytes) -> bytes:
    while True:
        b = b"=_digestd_" + secrets.token_hex(12).encode()
        if not any(b in p for p in parts):     # quoted-printable output could in principle contain it
            return b


def _one_line_value(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header must be one line: {value!r}")
    return value


def _ascii_header(name: str, value: str) -> bytes:
    """A header whose value is ASCII by construction (dates, ids, our own URLs); never folded,
    because a URL has no place to fold and RFC 2047 words are not allowed inside <...>."""
    line = f"{name}: {_one_line_value(name, value)}"
    if not line.isascii() or len(line) > _MAX_LINE:
        raise ValueError(f"the {name} header must be ASCII and at most {_MAX_LINE} octets: {value!r}")
    return line.encode("ascii") + b"\r\n"


def _folded(name: str, value: str) -> bytes:
    # The stdlib's header classes: RFC 2047 for non-ASCII words and display names, folding at 78.
    return _SMTP_POLICY.header_factory(name, _one_line_value(name, value)).fold(policy=_SMTP_POLICY).encode("ascii")


def _text_header(name: str, value: str) -> bytes:
    line = f"{name}: {_one_line_value(name, value)}"
    if line.isascii() and len(line) <= _FOLD_AT:
        return line.encode("ascii") + b"\r\n"
    return _folded(name, value)


def _address_header(name: str, value: str) -> bytes:
    if value.isascii() and not any(c in value for c in ' ,;:"()<>[]\\'):
        return _ascii_header(name, value)        # a bare address: nothing to quote or encode
    return _folded(name, value)


@functools.lru_cache(maxsize=8)
def _from_header(from_addr: str) -> bytes:
    return _address_header("From", from_addr)





def assemble(text: str, html: str, *, from_addr: str, to: str, subject: str, date: str, message_id: str,
             list_id: str, unsubscribe_url: str = "") -> bytes:
    """``multipart/alternative`` bytes, text first, HTML last (clients prefer the last part they
    can show), UTF-8 in quoted-printable, CRLF line ends. ``date`` is already RFC 5322."""
    text_part, html_part = _qp_body(text), _qp_body(html)
    boundary = _boundary(text_part, html_part)
    headers = [
        _from_header(from_addr),
        _address_header("To", to),
        _text_header("Subject", subject),
        _ascii_header("Date", date),
        _ascii_header("Message-ID", message_id if message_id.startswith("<") else f"<{message_id}>"),
        _ascii_header("List-Id", list_id if "<" in list_id else f"<{list_id}>"),
    ]
    if unsubscribe_url:
        headers.append(_ascii_header("List-Unsubscribe", f"<{unsubscribe_url}>"))
        # RFC 8058: mail providers POST this body to the URL above; no confirmation page in between.
        headers.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    # RFC 3834: keeps vacation auto-replies from answering every morning's digest.
    headers.append(b"Auto-Submitted: auto-generated\r\n")
    headers.append(b"MIME-Version: 1.0\r\n")
    headers.append(b'Content-Type: multipart/alternative;\r\n boundary="' + boundary + b'"\r\n')
    # RFC 2046 5.1.1: the CRLF before a delimiter belongs to the delimiter, not to the part.
    return b"".join((
        *headers, b"\r\n",
        b"--", boundary, b"\r\n", _PART_HEADERS % b"plain", text_part,
        b"\r\n--", boundary, b"\r\n", _PART_HEADERS % b"html", html_part,
        b"\r\n--", boundary, b"--\r\n",
    ))
