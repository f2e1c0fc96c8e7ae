"""Mail delivery against a real SMTP conversation (aiosmtpd on 127.0.0.1) and a real Maildir."""
from __future__ import annotations

import email
import email.policy
import mailbox
import shutil
import socket
import ssl
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from digestd.config import SmtpSettings
from digestd.errors import PermanentDeliveryError, TemporaryDeliveryError
from digestd.mail import MaildirMailer, Mailer, SmtpMailer

# aiosmtpd rightly warns about AUTH without TLS; these servers only listen on loopback.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


from smtp_recorder import Recorder, free_port, start  # noqa: E402


def settings(port: int, **kw) -> SmtpSettings:
    base = {"host": "127.0.0.1", "port": port, "security": "none", "from": "Paper digest <digest@example.org>",
            "timeout_seconds": 5}
    base.update(kw)
    return SmtpSettings.model_validate(base)


def message(to: str, subject: str = "Your papers for Mon 19 May: 2 picks") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Paper digest <digest@example.org>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{to.split('@')[0]}.2025-05-19@example.org>"
    msg.set_content("Bonjour Jörg 👍\n", cte="quoted-printable")
    return msg


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def server(recorder):
    c = start(recorder)
    yield c
    c.stop()


# -- plain SMTP --------------------------------------------------------------------------------------

def test_a_message_arrives_with_its_envelope_and_utf8_body_intact(server, recorder):
    with SmtpMailer(settings(server.port)) as mailer:
        mailer.send(message("alice@example.org"), "alice@example.org")
    assert recorder.recipients() == ["alice@example.org"]
    got = email.message_from_bytes(recorder.messages[0][2], policy=email.policy.default)
    assert got["Subject"] == "Your papers for Mon 19 May: 2 picks"
    assert got.get_content().replace("\r\n", "\n") == "Bonjour Jörg 👍\n"


def test_a_batch_uses_one_connection_for_several_messages(server, recorder):
    with SmtpMailer(settings(server.port)) as mailer:
        for who in ("alice", "bob", "carol"):
            mailer.send(message(f"{who}@example.org"), f"{who}@example.org")
    assert recorder.recipients() == ["alice@example.org", "bob@example.org", "carol@example.org"]
    assert recorder.sessions == 1


def test_send_outside_a_batch_opens_and_closes_its_own_connection(server, recorder):
    mailer = SmtpMailer(settings(server.port))
    mailer.send(message("alice@example.org"), "alice@example.org")
    mailer.send(message("bob@example.org"), "bob@example.org")
    assert recorder.sessions == 2
    assert mailer._conn is None


def test_the_envelope_sender_is_the_bare_from_address(server, recorder):
    with SmtpMailer(settings(server.port)) as mailer:
        assert mailer.envelope_from == "digest@example.org"
        mailer.send(message("alice@example.org"), "alice@example.org")
    assert b"From: Paper digest <digest@example.org>" in recorder.messages[0][2]


def test_a_5xx_recipient_raises_permanent_and_the_next_recipient_still_gets_through(server, recorder):
    recorder.refuse["gone@example.org"] = "550 5.1.1 No such user"
    with SmtpMailer(settings(server.port)) as mailer:
        with pytest.raises(PermanentDeliveryError) as e:
            mailer.send(message("gone@example.org"), "gone@example.org")
        mailer.send(message("bob@example.org"), "bob@example.org")
    assert "gone@example.org" in str(e.value) and "550" in str(e.value)
    assert "\n" not in str(e.value)
    assert recorder.recipients() == ["bob@example.org"]
    assert recorder.sessions == 1


def test_a_4xx_recipient_raises_temporary(server, recorder):
    recorder.refuse["busy@example.org"] = "451 4.3.0 Mailbox busy, try again later"
    with SmtpMailer(settings(server.port)) as mailer:
        with pytest.raises(TemporaryDeliveryError) as e:
            mailer.send(message("busy@example.org"), "busy@example.org")
        mailer.send(message("bob@example.org"), "bob@example.org")
    assert "busy@example.org" in str(e.value) and "451" in str(e.value)
    assert not isinstance(e.value, PermanentDeliveryError)
    assert isinstance(e.value.__cause__, Exception)  # the smtplib error is kept for the log
    assert recorder.recipients() == ["bob@example.org"]


def test_a_connection_the_server_dropped_is_reopened_once_for_the_next_message(server, recorder):
    recorder.drop_after_data = True
    with SmtpMailer(settings(server.port)) as mailer:
        mailer.send(message("alice@example.org"), "alice@example.org")
        time.sleep(0.3)
        mailer.send(message("bob@example.org"), "bob@example.org")
    assert recorder.recipients() == ["alice@example.org", "bob@example.org"]
    assert recorder.sessions == 2


def test_a_refused_connection_is_temporary_and_names_the_recipient():
    with pytest.raises(TemporaryDeliveryError) as e:
        with SmtpMailer(settings(free_port())) as mailer:
            mailer.send(message("alice@example.org"), "alice@example.org")
    assert "alice@example.org" in str(e.value)


def test_a_server_that_never_answers_times_out_as_temporary():
    # The kernel completes the TCP handshake from the listen backlog; nobody ever says 220.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        s = settings(silent.getsockname()[1], timeout_seconds=0.3)
        started = time.monotonic()
        with pytest.raises(TemporaryDeliveryError) as e:
            SmtpMailer(s).send(message("alice@example.org"), "alice@example.org")
    assert time.monotonic() - started < 3
    assert "timed out" in str(e.value) and "alice@example.org" in str(e.value)


def test_a_recipient_with_a_line_break_is_refused_before_any_connection():
    with pytest.raises(PermanentDeliveryError):
        SmtpMailer(settings(free_port())).send(message("alice@example.org"), "alice@example.org\r\nRCPT TO:<x@y>")


# -- AUTH ----------------------------------------------------------------------------------------

def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"digest" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth_server(recorder):
    c = start(recorder, authenticator=_authenticator, auth_required=True, auth_require_tls=False)
    yield c
    c.stop()


def test_auth_with_the_right_password_delivers(auth_server, recorder):
    with SmtpMailer(settings(auth_server.port, username="digest"), password="s3cret") as mailer:
        mailer.send(message("alice@example.org"), "alice@example.org")
        mailer.send(message("bob@example.org"), "bob@example.org")
    assert recorder.recipients() == ["alice@example.org", "bob@example.org"]
    assert recorder.sessions == 1


def test_auth_takes_the_password_from_the_configured_environment_variable(auth_server, recorder, monkeypatch):
    monkeypatch.setenv("DIGESTD_TEST_SMTP_PW", "s3cret")
    s = settings(auth_server.port, username="digest", password_env="DIGESTD_TEST_SMTP_PW")
    SmtpMailer(s).send(message("alice@example.org"), "alice@example.org")
    assert recorder.recipients() == ["alice@example.org"]


def test_a_wrong_password_is_permanent(auth_server, recorder):
    with pytest.raises(PermanentDeliveryError) as e:
        SmtpMailer(settings(auth_server.port, username="digest"), password="wrong").send(
            message("alice@example.org"), "alice@example.org")
    assert "535" in str(e.value) and "alice@example.org" in str(e.value)
    assert recorder.messages == []


def test_without_a_username_no_auth_is_attempted_and_the_server_refuses(auth_server, recorder):
    with pytest.raises(PermanentDeliveryError):
        SmtpMailer(settings(auth_server.port)).send(message("alice@example.org"), "alice@example.org")
    assert recorder.messages == []


# -- TLS -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not available to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"),
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def _server_context(cert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*map(str, cert))
    return ctx


def _client_context(cert) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[0]))


def test_starttls_delivers_over_an_encrypted_session(cert, recorder):
    c = start(recorder, tls_context=_server_context(cert), require_starttls=True)
    try:
        with SmtpMailer(settings(c.port, security="starttls"), ssl_context=_client_context(cert)) as mailer:
            mailer.send(message("alice@example.org"), "alice@example.org")
        session = recorder.messages[0][0]
        assert session.ssl is not None
    finally:
        c.stop()
    assert recorder.recipients() == ["alice@example.org"]


def test_starttls_with_an_untrusted_certificate_is_refused(cert, recorder):
    c = start(recorder, tls_context=_server_context(cert), require_starttls=True)
    try:
        with pytest.raises(TemporaryDeliveryError) as e:
            SmtpMailer(settings(c.port, security="starttls")).send(message("alice@example.org"), "alice@example.org")
    finally:
        c.stop()
    assert "certificate" in str(e.value)
    assert recorder.messages == []


def test_starttls_never_falls_back_to_plain_text(server, recorder):
    with pytest.raises(PermanentDeliveryError):
        SmtpMailer(settings(server.port, security="starttls")).send(message("alice@example.org"), "alice@example.org")
    assert recorder.messages == []


def test_implicit_tls_delivers(cert, recorder):
    c = start(recorder, ssl_context=_server_context(cert))
    try:
        with SmtpMailer(settings(c.port, security="ssl"), ssl_context=_client_context(cert)) as mailer:
            mailer.send(message("alice@example.org"), "alice@example.org")
    finally:
        c.stop()
    assert recorder.recipients() == ["alice@example.org"]


# -- Maildir -------------------------------------------------------------------------------------

def test_maildir_holds_each_message_complete_in_new(tmp_path):
    box = tmp_path / "outbox"
    with MaildirMailer(box) as mailer:
        mailer.send(message("alice@example.org"), "alice@example.org")
        mailer.send(message("bob@example.org"), "bob@example.org")
    assert sorted(p.name for p in box.iterdir()) == ["cur", "new", "tmp"]
    assert list((box / "tmp").iterdir()) == []
    got = sorted((email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                  for p in (box / "new").iterdir()), key=lambda m: m["Delivered-To"])
    assert [m["Delivered-To"] for m in got] == ["alice@example.org", "bob@example.org"]
    assert got[0].get_content() == "Bonjour Jörg 👍\n"
    assert len(mailbox.Maildir(box)) == 2


def test_maildir_leaves_the_callers_message_unchanged(tmp_path):
    msg = message("alice@example.org")
    before = msg.as_bytes()
    MaildirMailer(tmp_path / "outbox").send(msg, "alice@example.org")
    assert msg.as_bytes() == before


def test_maildir_that_cannot_be_created_is_a_delivery_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TemporaryDeliveryError) as e:
        MaildirMailer(blocker / "outbox").send(message("alice@example.org"), "alice@example.org")
    assert "alice@example.org" in str(e.value) or "outbox" in str(e.value)


# -- raw bytes -----------------------------------------------------------------------------------------

def raw_message(to: str) -> bytes:
    """Wire-ready bytes as render.render_message makes them, with a line SMTP must dot-stuff."""
    msg = message(to)
    msg.set_content("Bonjour Jörg 👍\n.a line that starts with a dot\n..and two\n", cte="quoted-printable")
    raw = msg.as_bytes(policy=email.policy.SMTP)
    assert b"\r\n.a line" in raw and max(raw) < 128
    return raw


def test_raw_bytes_arrive_unchanged_with_their_envelope(server, recorder):
    raws = {who: raw_message(f"{who}@example.org") for who in ("alice", "bob")}
    with SmtpMailer(settings(server.port)) as mailer:
        for who, raw in raws.items():
            mailer.send_raw(raw, f"{who}@example.org")
    assert [m[2] for m in recorder.messages] == list(raws.values())
    assert recorder.recipients() == ["alice@example.org", "bob@example.org"]
    assert recorder.senders == ["digest@example.org", "digest@example.org"]
    assert recorder.sessions == 1


def test_raw_bytes_go_out_with_the_envelope_sender_asked_for(server, recorder):
    with SmtpMailer(settings(server.port)) as mailer:
        mailer.send_raw(raw_message("alice@example.org"), "alice@example.org", sender="bounces+alice@example.org")
    assert recorder.senders == ["bounces+alice@example.org"]


def test_raw_bytes_to_a_refused_recipient_map_to_permanent_and_temporary_errors(server, recorder):
    recorder.refuse["gone@example.org"] = "550 5.1.1 No such user"
    recorder.refuse["busy@example.org"] = "451 4.3.0 Mailbox busy, try again later"
    with SmtpMailer(settings(server.port)) as mailer:
        with pytest.raises(PermanentDeliveryError) as gone:
            mailer.send_raw(raw_message("gone@example.org"), "gone@example.org")
        with pytest.raises(TemporaryDeliveryError) as busy:
            mailer.send_raw(raw_message("busy@example.org"), "busy@example.org")
        mailer.send_raw(raw_message("bob@example.org"), "bob@example.org")
    assert "550" in str(gone.value) and "gone@example.org" in str(gone.value)
    assert "451" in str(busy.value) and not isinstance(busy.value, PermanentDeliveryError)
    assert recorder.recipients() == ["bob@example.org"] and recorder.sessions == 1


def test_raw_bytes_after_a_dropped_connection_go_out_on_a_new_one(server, recorder):
    recorder.drop_after_data = True
    with SmtpMailer(settings(server.port)) as mailer:
        mailer.send_raw(raw_message("alice@example.org"), "alice@example.org")
        time.sleep(0.3)
        mailer.send_raw(raw_message("bob@example.org"), "bob@example.org")
    assert recorder.recipients() == ["alice@example.org", "bob@example.org"] and recorder.sessions == 2


def test_raw_bytes_to_a_server_that_is_down_are_temporary():
    with pytest.raises(TemporaryDeliveryError) as e:
        SmtpMailer(settings(free_port())).send_raw(raw_message("alice@example.org"), "alice@example.org")
    assert "alice@example.org" in str(e.value)


def test_raw_bytes_with_a_line_break_in_the_recipient_are_refused_before_any_connection():
    with pytest.raises(PermanentDeliveryError):
        SmtpMailer(settings(free_port())).send_raw(raw_message("a@example.org"), "a@example.org\r\nRCPT TO:<b@x>")


def test_maildir_stores_raw_bytes_unchanged_after_the_delivered_to_line(tmp_path):
    raw = raw_message("alice@example.org")
    mailer = MaildirMailer(tmp_path / "outbox")
    mailer.send_raw(raw, "alice@example.org")
    (stored,) = (tmp_path / "outbox" / "new").iterdir()
    assert stored.read_bytes() == b"Delivered-To: alice@example.org\r\n" + raw
    got = email.message_from_bytes(stored.read_bytes(), policy=email.policy.default)
    assert got["Delivered-To"] == "alice@example.org" and got.get_content().replace("\r\n", "\n").startswith("Bonjour Jörg 👍\n")


def test_a_mailer_that_only_sends_messages_still_takes_raw_bytes():
    class OnlySend(Mailer):
        def __init__(self):
            self.got = []

        def send(self, msg, to):
            self.got.append((msg, to))

    m = OnlySend()
    m.send_raw(raw_message("alice@example.org"), "alice@example.org")
    (msg, to), = m.got
    assert to == "alice@example.org" and msg["Subject"] == "Your papers for Mon 19 May: 2 picks"
