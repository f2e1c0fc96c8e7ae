"""Mail delivery behind one interface: SMTP, or a Maildir when no ``[smtp]`` is configured.

    with mailer:                  # one connection (or one open Maildir) for the whole batch
        for raw, to in batch:
            try:
                mailer.send_raw(raw, to)      # RFC 5322 bytes (render.render_message); send(msg, to) for an EmailMessage
            except TemporaryDeliveryError: ...   # 4xx, disconnects, timeouts: retry later
            except PermanentDeliveryError: ...   # 5xx: record on the digest, never retry

A failed recipient never poisons the connection for the next one: after a refusal the SMTP
session is reset (smtplib sends RSET), after a disconnect the next ``send`` reconnects.
``send`` outside a ``with`` block opens and closes a connection for that one message.
"""
from __future__ import annotations

import email
import email.parser
import email.policy
import hashlib
import os
import email.utils
import mailbox
import select
import smtplib
import socket
import ssl
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType

from .config import SmtpSettings
from .dkim_sign import DkimSigner
from .errors import ConfigError, DeliveryError, PermanentDeliveryError, TemporaryDeliveryError


class Mailer:
    """Hand one message to one recipient; use as a context manager to batch. With ``dkim`` set,
    every message is DKIM-signed as it is handed over (``_signed``)."""

    dkim: DkimSigner | None = None

    def _signed(self, raw: bytes) -> bytes:
        return self.dkim.sign(raw) if self.dkim is not None else raw

    def open(self) -> None:  # pragma: no cover - trivial default
        pass

    def close(self) -> None:  # pragma: no cover - trivial default
        pass

    def send(self, msg: EmailMessage, to: str) -> None:
        raise NotImplementedError

    def send_raw(self, raw: bytes, to: str, sender: str | None = None) -> None:
        """Hand over a finished message as it goes on the wire (CRLF line ends), unchanged.
        ``sender``: the envelope sender (bounces), default the mailer's own. This default serves
        mailers that only implement ``send``; it cannot pass ``sender`` on."""
        self.send(email.message_from_bytes(raw, policy=email.policy.default), to)

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _reply_text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())


def _by_code(code: int) -> type[DeliveryError]:
    # RFC 5321: 5yz is a permanent negative reply, 4yz transient; anything odd is retried.
    return PermanentDeliveryError if 500 <= code < 600 else TemporaryDeliveryError


def _check_recipient(to: str) -> None:
    if not to or any(c in to for c in "\r\n"):
        raise PermanentDeliveryError(f"invalid recipient address {to!r}")


class SmtpMailer(Mailer):
    """SMTP with STARTTLS, implicit TLS (``ssl``) or plain (``none``), AUTH when a username is set.

    ``password`` defaults to ``settings.password()`` (a ``ConfigError`` when it is configured but
    unavailable); ``ssl_context`` defaults to the system's verifying context (tests pass one that
    trusts their self-signed certificate); ``dkim`` defaults to the signer ``settings`` configure.
    """

    def __init__(self, settings: SmtpSettings, password: str | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, dkim: DkimSigner | None = None) -> None:
        self.settings = settings
        self._password = password if password is not None else settings.password()
        self.dkim = dkim if dkim is not None else DkimSigner.from_settings(settings)
        self._context = ssl_context
        self._conn: smtplib.SMTP | None = None
        self._batch = False
        # The envelope sender is the bare address of From; bounces go there.
        self.envelope_from = email.utils.parseaddr(settings.from_)[1] or settings.from_

    # -- connection -----------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _connect(self, to: str) -> smtplib.SMTP:
        s = self.settings
        context = self._context or ssl.create_default_context()
        conn: smtplib.SMTP | None = None
        try:
            if s.security == "ssl":
                conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds, context=context)
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
            conn.ehlo()
            if s.security == "starttls":
                # Never fall back to plain text: a server that stops offering STARTTLS is an attack or a misconfiguration.
                conn.starttls(context=context)
                conn.ehlo()
            if s.username:
                if self._password is None:
                    # The operator's mistake, not the recipient's: the digest stays pending.
                    raise ConfigError("smtp.username is set but no password; set password_env or password_file",
                                      [("smtp.username", "a username is set but no password; fix: set password_env or password_file")])
                conn.login(s.username, self._password)
            return conn
        except BaseException as e:
            if conn is not None:
                _close_quietly(conn)
            if isinstance(e, (DeliveryError, ConfigError)) or not isinstance(e, Exception):
                raise
            raise self._map(e, to, f"cannot send to {to}: SMTP session with {self._where()} failed") from e

    def open(self) -> None:
        # Connect lazily on the first send: a batch with nothing to send opens no connection.
        self._batch = True

    def close(self) -> None:
        self._batch = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                _close_quietly(conn)

    def _alive(self, conn: smtplib.SMTP) -> bool:
        # Servers drop idle sessions (RFC 5321 allows 5 minutes); probe before reusing one rather
        # than retrying after a failed DATA, which could deliver the same digest twice. A server
        # that hung up (or said 421) has left something to read on the socket; a session with
        # nothing pending is in use, and needs no NOOP round trip before each of 10,000 messages.
        try:
            if conn.sock is not None and not select.select([conn.sock], [], [], 0)[0]:
                return True
            return conn.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def _session(self, to: str) -> smtplib.SMTP:
        if self._conn is not None and not self._alive(self._conn):
            _close_quietly(self._conn)
            self._conn = None
        if self._conn is None:
            self._conn = self._connect(to)
        return self._conn

    # -- sending --------------------------------------------------------------------------------
    def send(self, msg: EmailMessage, to: str) -> None:
        if self.dkim is not None:
            return self.send_raw(msg.as_bytes(policy=email.policy.SMTP), to)
        self._deliver(to, lambda conn: conn.send_message(msg, from_addr=self.envelope_from, to_addrs=[to]))

    def send_raw(self, raw: bytes, to: str, sender: str | None = None) -> None:
        # sendmail writes bytes as they are (dot-stuffing aside, which the server undoes): no
        # second flattening of a message that render_message already built for the wire.
        raw = self._signed(raw)
        self._deliver(to, lambda conn: conn.sendmail(sender or self.envelope_from, [to], raw))

    def _deliver(self, to: str, transmit) -> None:
        _check_recipient(to)
        conn = self._session(to)
        try:
            refused = transmit(conn)
        except BaseException as e:
            if isinstance(e, (smtplib.SMTPServerDisconnected, OSError)) or (
                    isinstance(e, smtplib.SMTPResponseException) and e.smtp_code == 421):
                # The session is gone; the next send starts a fresh one.
                _close_quietly(conn)
                self._conn = None
            if not isinstance(e, Exception):
                raise
            raise self._map(e, to, f"cannot send to {to}") from e
        finally:
            if not self._batch and self._conn is not None:
                self.close()
        if refused:  # only possible with several recipients, kept for completeness
            code, text = refused.get(to, (550, b"refused"))
            raise _by_code(code)(f"SMTP server refused {to}: {code} {_reply_text(text)}")

    def _map(self, e: BaseException, to: str, what: str) -> DeliveryError:
        if isinstance(e, smtplib.SMTPRecipientsRefused):
            code, text = e.recipients.get(to) or next(iter(e.recipients.values()), (550, b""))
            return _by_code(code)(f"SMTP server refused recipient {to}: {code} {_reply_text(text)}")
        if isinstance(e, smtplib.SMTPResponseException):
            return _by_code(e.smtp_code)(f"{what}: {e.smtp_code} {_reply_text(e.smtp_error)}")
        if isinstance(e, smtplib.SMTPNotSupportedError):
            # STARTTLS, AUTH or SMTPUTF8 missing on the server: retrying will not change that.
            return PermanentDeliveryError(f"{what}: server does not support it ({_reply_text(str(e))})")
        if isinstance(e, ssl.SSLCertVerificationError):
            return TemporaryDeliveryError(f"{what}: TLS certificate not trusted ({e.verify_message})")
        # smtplib reports a read timeout as a disconnect; the timeout is the useful half.
        if isinstance(e, (socket.timeout, TimeoutError)) or isinstance(e.__context__, (socket.timeout, TimeoutError)):
            return TemporaryDeliveryError(f"{what}: timed out after {self.settings.timeout_seconds:g}s")
        if isinstance(e, smtplib.SMTPServerDisconnected):
            return TemporaryDeliveryError(f"{what}: server closed the connection")
        if isinstance(e, OSError):
            return TemporaryDeliveryError(f"{what}: {e.strerror or e}")
        return TemporaryDeliveryError(f"{what}: {_reply_text(str(e)) or type(e).__name__}")


def _close_quietly(conn: smtplib.SMTP) -> None:
    try:
        conn.close()
    except OSError:
        pass


class MaildirMailer(Mailer):
    """Writes each message into a Maildir: the outbox when no SMTP server is configured.

    A message is written into ``tmp/`` and renamed into ``new/``, so a reader never sees half a
    message. Its file is named after its Message-ID and recipient, and a message already there is
    not written again: a process killed after writing a digest but before recording it sends it
    again on restart (same Message-ID), and the Maildir still holds it once.
    """

    def __init__(self, path: Path | str, *, dkim: DkimSigner | None = None) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None
        self._present: set[str] | None = None
        self.last_key: str | None = None
        self.dkim = dkim

    def _mailbox(self) -> mailbox.Maildir:
        try:
            return mailbox.Maildir(self.path, create=True)
        except OSError as e:
            raise TemporaryDeliveryError(f"cannot open Maildir {self.path}: {e.strerror or e}") from e

    def open(self) -> None:
        self._box = self._mailbox()

    def close(self) -> None:
        self._box = None
        self._present = None

    def _delivered(self) -> set[str]:
        """Names of the messages in the Maildir (a reader moves them to cur/ and adds flags):
        listed once per batch, not once per message."""
        if self._present is None or self._box is None:
            names = set()
            for sub in ("new", "cur"):
                try:
                    names.update(n.split(":", 1)[0] for n in os.listdir(self.path / sub))
                except FileNotFoundError:
                    pass
            self._present = names
        return self._present

    def send(self, msg: EmailMessage, to: str) -> None:
        _check_recipient(to)
        # Like a delivering MTA, record the envelope recipient without touching the caller's message.
        self._write(f"Delivered-To: {to}\n".encode() + self._signed(msg.as_bytes()), to)

    def send_raw(self, raw: bytes, to: str, sender: str | None = None) -> None:
        _check_recipient(to)
        raw = self._signed(raw)
        newline = b"\r\n" if raw[:raw.find(b"\n") + 1].endswith(b"\r\n") else b"\n"   # the message's own
        self._write(f"Delivered-To: {to}".encode() + newline + raw, to)

    def _write(self, data: bytes, to: str) -> None:
        box = self._box or self._mailbox()
        mid = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data).get("Message-ID")
        try:
            if not mid:
                self.last_key = box.add(data)
                return
            key = "digestd-" + hashlib.sha256(f"{mid.strip()}\0{to}".encode()).hexdigest()[:40]
            present = self._delivered()
            if key not in present:
                tmp = self.path / "tmp" / f"{key}.{os.getpid()}"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, self.path / "new" / key)
                present.add(key)
            self.last_key = key
        except OSError as e:
            raise TemporaryDeliveryError(f"cannot write mail for {to} to Maildir {self.path}: {e.strerror or e}") from e
