import pytest

from digestd.errors import TokenError
from digestd.tokens import Signer, hash_token, load_or_create_secret


def test_a_feedback_link_round_trips_and_a_tampered_one_is_refused():
    s = Signer(b"k" * 64)
    tok = s.feedback_token("alice", "2505.10575", "up")
    assert s.read_feedback(tok) == ("alice", "2505.10575", "up")
    with pytest.raises(TokenError):
        s.read_feedback(tok[:-2] + ("A" if tok[-2] != "A" else "B") + tok[-1])
    with pytest.raises(TokenError):
        Signer(b"x" * 64).read_feedback(tok)


def test_an_expired_feedback_link_is_refused(monkeypatch):
    import itsdangerous.timed as timed

    s = Signer(b"k" * 64)
    monkeypatch.setattr(timed.time, "time", lambda: 1_000_000)
    tok = s.feedback_token("alice", "2505.10575", "down")
    monkeypatch.setattr(timed.time, "time", lambda: 1_000_000 + 3600)
    with pytest.raises(TokenError, match="expired"):
        s.read_feedback(tok, max_age_seconds=60)


def test_unsubscribe_links_are_signed_per_user():
    s = Signer(b"k" * 64)
    assert s.read_unsubscribe(s.unsubscribe_token("bob")) == "bob"
    with pytest.raises(TokenError):
        s.read_unsubscribe(s.feedback_token("bob", "p", "up"))


def test_feed_tokens_are_long_random_looking_and_change_with_the_nonce():
    s = Signer(b"k" * 64)
    a, b = s.feed_token("alice", "n1"), s.feed_token("alice", "n2")
    assert a != b and len(a) >= 40 and s.feed_token("alice", "n1") == a
    assert hash_token(a) != a


def test_the_secret_key_is_created_once_and_private(tmp_path):
    path = tmp_path / "d" / "secret.key"
    k1 = load_or_create_secret(path)
    assert load_or_create_secret(path) == k1 and len(k1) >= 32
    assert (path.stat().st_mode & 0o077) == 0


def test_a_link_signed_with_a_compressed_payload_by_an_earlier_release_still_reads():
    from itsdangerous import URLSafeTimedSerializer

    from digestd.tokens import Signer

    key = b"k" * 32
    long_key = "title:" + "very long paper title " * 10           # long enough for zlib to shorten
    old = URLSafeTimedSerializer(key, salt="digestd.feedback").dumps(["alice", long_key, "up"])
    assert old.startswith(".")                                       # the earlier release compressed it
    assert Signer(key).read_feedback(old) == ("alice", long_key, "up")
