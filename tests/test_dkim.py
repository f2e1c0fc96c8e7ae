"""Optional DKIM signing: a digest that goes out through SMTP, or into the Maildir, carries a
signature that verifies against the public key, over the headers a receiver judges it by."""
from __future__ import annotations

import base64
import email
import email.policy
import mailbox
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest

from digestd import pipeline
from digestd.app import build_app
from digestd.config import load_config
from digestd.dkim_sign import DkimSigner
from digestd.mail import MaildirMailer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory) -> tuple[Path, bytes]:
    """A fresh RSA key: its PEM file and the TXT record that would publish it."""
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not available to make a test key")
    d = tmp_path_factory.mktemp("dkim")
    subprocess.run(["openssl", "genrsa", "-out", str(d / "dkim.pem"), "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(d / "dkim.pem"), "-pubout", "-outform", "der"],
                         check=True, capture_output=True).stdout
    return d / "dkim.pem", b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def dns_for(record: bytes, name: bytes = b"mail._domainkey.example.org."):
    def lookup(qname, timeout=5):
        return record if qname == name else None
    return lookup


def signed_headers(raw: bytes) -> set[str]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    tags = dict(t.strip().split("=", 1) for t in "".join(msg["DKIM-Signature"].split()).split(";") if t.strip())
    return {h.lower() for h in tags["h"].split(":")}


def test_a_digest_sent_by_smtp_is_signed_over_from_subject_list_id_and_list_unsubscribe(tmp_path, smtp, clock, rsa_key):
    rec, port = smtp
    key, record = rsa_key
    lists = tmp_path / "lists"
    lists.mkdir()
    shutil.copy(REPO / "examples" / "lists" / "arxiv" / "2025-05-20.atom", lists)
    cfg = tmp_path / "digestd.toml"
    cfg.write_text(f"""
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "Paper digest <digest@example.org>"
dkim_selector = "mail"
dkim_domain = "example.org"
dkim_key_file = "{key}"

[[sources]]
name = "arxiv"
type = "replay"
path = "{lists}"

[[users]]
id = "alice"
email = "alice@example.org"
send_at = "07:00"
days = ["tue"]
keywords = ["language models"]
""")
    app = build_app(load_config(str(cfg)), clock=clock)
    try:
        _, delivered = pipeline.run_once(app)
    finally:
        app.close()
    assert [d.status for d in delivered] == ["sent"]
    raw = rec.messages[0][2]
    assert dkim.verify(raw, dnsfunc=dns_for(record))
    assert {"from", "subject", "list-id", "list-unsubscribe", "date", "message-id", "to"} <= signed_headers(raw)
    # The signature is over what the reader sees: another subject does not verify.
    forged = raw.replace(b"Subject: ", b"Subject: URGENT ", 1)
    assert forged != raw and not dkim.verify(forged, dnsfunc=dns_for(record))
    # A key published under another selector is not this one.
    assert not dkim.verify(raw, dnsfunc=dns_for(record, b"other._domainkey.example.org."))


def test_what_the_maildir_stores_is_signed_like_what_smtp_would_send(tmp_path, rsa_key):
    key, record = rsa_key
    raw = (b"From: Paper digest <digest@example.org>\r\nTo: bob@example.org\r\nSubject: Your papers\r\n"
           b"Date: Tue, 20 May 2025 09:00:00 +0000\r\nMessage-ID: <digest.1.2025-05-20@example.org>\r\n"
           b"List-Id: digestd daily digest <digest.example.org>\r\n"
           b"List-Unsubscribe: <http://127.0.0.1:8080/u/x>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\nTwo papers today.\r\n")
    with MaildirMailer(tmp_path / "outbox", dkim=DkimSigner("mail", "example.org", key)) as mailer:
        mailer.send_raw(raw, "bob@example.org")
    stored = [m.as_bytes() for m in mailbox.Maildir(tmp_path / "outbox", create=False)]
    assert len(stored) == 1 and b"DKIM-Signature:" in stored[0]
    assert dkim.verify(stored[0], dnsfunc=dns_for(record))
    assert {"from", "subject", "list-id", "list-unsubscribe"} <= signed_headers(stored[0])


def test_without_dkim_settings_nothing_is_signed(tmp_path):
    raw = b"From: a@example.org\nTo: b@example.org\nMessage-ID: <m1@example.org>\nSubject: s\n\nbody\n"
    with MaildirMailer(tmp_path / "outbox") as mailer:
        mailer.send_raw(raw, "b@example.org")
    (stored,) = [m.as_bytes() for m in mailbox.Maildir(tmp_path / "outbox", create=False)]
    assert b"DKIM-Signature" not in stored
