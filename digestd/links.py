"""The URLs a reader is given: private feed, feedback and unsubscribe links, and their tokens.

Feed tokens are an HMAC of a per-reader nonce (stored hashed), so a mail's footer can be rebuilt at
any time; feedback and unsubscribe links are signed, so the server keeps no table of them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from . import ids
from .store import Paper
from .tokens import hash_token, new_nonce, tokens_equal

if TYPE_CHECKING:
    from .app import App


def feed_token(app: "App", user_id: str) -> str:
    return feed_tokens(app, [user_id])[user_id]


def feed_tokens(app: "App", user_ids: Iterable[str]) -> dict[str, str]:
    """Every reader's feed token, in one read; readers who had none get one, in one write."""
    rows = app.store.users_by_ids(user_ids)
    out: dict[str, str] = {}
    fresh: list[tuple[str, str, str]] = []
    for uid in dict.fromkeys(user_ids):
        row = rows.get(uid)
        if row is None:
            app.store.get_user(uid)          # raises "unknown user"
        nonce = row.feed_nonce
        if not nonce:
            nonce = new_nonce()
            token = app.signer.feed_token(uid, nonce)
            fresh.append((uid, nonce, hash_token(token)))
        out[uid] = app.signer.feed_token(uid, nonce)
    # Another process may have minted a reader's first token at the same moment: its nonce won.
    for uid, nonce in app.store.mint_feed_tokens(fresh).items():
        out[uid] = app.signer.feed_token(uid, nonce)
    return out


def rotate_feed_token(app: "App", user_id: str) -> str:
    app.store.get_user(user_id)
    nonce = new_nonce()
    token = app.signer.feed_token(user_id, nonce)
    app.store.set_feed_token(user_id, nonce, hash_token(token))
    return feed_url(app, token)


def rehash_feed_tokens(app: "App") -> int:
    """After the signing key changed: store the hash of each reader's feed token under the new key
    (same nonce), so ``feed-url`` prints a URL that opens. Returns how many readers have one."""
    rows = [(u.id, u.feed_nonce, hash_token(app.signer.feed_token(u.id, u.feed_nonce)))
            for u in app.store.users(active_only=False) if u.feed_nonce]
    app.store.set_feed_tokens(rows)
    return len(rows)


def user_for_feed_token(app: "App", token: str) -> str | None:
    """The configured user whose private feed ``token`` opens, else None (no hint why)."""
    digest = hash_token(token)
    owner = app.store.feed_token_owner(digest)
    if owner is None or not owner[1] or not tokens_equal(owner[1], digest):
        return None
    if app.settings.user(owner[0]) is None:
        return None
    return owner[0]


def feed_url(app: "App", token: str) -> str:
    return f"{app.settings.digestd.base_url}/feeds/{token}.atom"


def profile_url(app: "App", token: str) -> str:
    return f"{app.settings.digestd.base_url}/profile/{token}"


def today_url(app: "App", token: str) -> str:
    return f"{app.settings.digestd.base_url}/profile/{token}/today"


def feedback_url(app: "App", user_id: str, paper_key: str, vote: str, via: str = "email") -> str:
    """``via`` ("email" or "feed") is signed into the link, so a vote says where it was given."""
    return f"{app.settings.digestd.base_url}/f/{app.signer.feedback_token(user_id, paper_key, vote, via)}"


def feedback_done_url(app: "App", token: str, vote: str, undo: str | None) -> str:
    """Where a press on a feedback page is sent on (303): the confirmation, with Undo."""
    return f"{app.settings.digestd.base_url}/f/{token}/done?vote={vote}" + (f"&undo={undo}" if undo else "")


def unsubscribe_url(app: "App", user_id: str) -> str:
    return f"{app.settings.digestd.base_url}/u/{app.signer.unsubscribe_token(user_id)}"


def paper_urls(p: Paper) -> tuple[str, str | None]:
    """(landing page, PDF) of a stored paper, for an ``href``: only http(s) links ever come out
    ("" / None otherwise), whatever the row holds."""
    from .safety import safe_url

    pdf = safe_url(p.pdf_url)
    if p.arxiv_id:
        return safe_url(p.url) or ids.abs_url(p.arxiv_id), pdf or ids.pdf_url(p.arxiv_id)
    return safe_url(p.url) or safe_url(p.key) or "", pdf
