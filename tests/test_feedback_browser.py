"""Opening the links of a real delivered mail in a real browser (Debian chromium, headless, through
Playwright) records nothing; a press on the page records exactly that vote.

The landed code's feedback page submitted itself by script once the link was 5 minutes old, so a
mail scanner that runs JavaScript voted for every paper of a mail (and 👍 then 👎 left 👎)."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import socket
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from digestd import accounts, pipeline
from digestd.app import build_app
from digestd.clock import FixedClock
from digestd.config import parse_config
from digestd.http_server import HttpThread
from digestd.web import create_app
from test_daemon_support import config_text, real_papers, user_block, write_hf_list

CHROMIUM = Path("/usr/bin/chromium")
playwright_sync = pytest.importorskip("playwright.sync_api", reason="Playwright (Python) is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium")

PHONE = {"width": 375, "height": 667}


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.hrefs += [v for k, v in attrs if k == "href" and v]


def _every_link(msg) -> list[str]:
    """Every href of the HTML part, every URL of the text part, and the List-Unsubscribe URL."""
    parser = _Hrefs()
    parser.feed(msg.get_body(("html",)).get_content())
    text = msg.get_body(("plain",)).get_content()
    header = re.findall(r"<(https?://[^>]+)>", str(msg["List-Unsubscribe"] or ""))
    return list(dict.fromkeys(parser.hrefs + re.findall(r"https?://\S+", text) + header))


@pytest.fixture
def delivered(tmp_path):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    write_hf_list(tmp_path / "lists", "2025-05-20", real_papers("2025-05-20", 15))
    settings = parse_config(config_text(base_url=base, users=user_block("alice", tz="UTC", send_at="08:00", size=3)),
                            config_dir=tmp_path)
    clock = FixedClock(dt.datetime(2025, 5, 20, 9, 0, tzinfo=dt.timezone.utc))
    app = build_app(settings, clock=clock)          # no [smtp]: the real pass writes to the Maildir outbox
    pipeline.fetch_all(app)
    assert [o.status for o in pipeline.deliver_due(app)] == ["sent"]
    [path] = list((settings.outbox_dir / "new").iterdir())
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    http = HttpThread(create_app(app), sock)
    http.start()
    while not http.server.started:
        assert http.is_alive(), http.error
        time.sleep(0.02)
    # Opened long after it was sent (when the landed page submitted itself), by the wall clock too.
    clock.at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    yield app, base, msg
    http.stop()
    app.close()


def _votes(app) -> tuple[list, list, bool]:
    data = accounts.export_user(app, "alice")
    return data["feedback"], data["feedback_history"], data["user"]["subscribed"]


def test_opening_every_link_of_a_mail_records_nothing_and_a_press_records_that_vote(delivered):
    app, base, msg = delivered
    links = _every_link(msg)
    local = [u for u in links if u.startswith(base + "/")]
    assert sum("/f/" in u for u in local) == 6 and any("/u/" in u for u in local) and any("/feeds/" in u for u in local)

    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        context = browser.new_context(viewport=PHONE, java_script_enabled=True, accept_downloads=True)
        # Loopback only: the paper links (arxiv.org, ...) are not fetched.
        context.route(re.compile(r"^(?!" + re.escape(base) + r"/).*"), lambda route: route.abort())
        page = context.new_page()
        for url in local:
            try:
                page.goto(url, wait_until="load")
            except playwright_sync.Error as e:        # the Atom feed may be taken as a download
                assert "Download is starting" in str(e), (url, e)
            page.wait_for_timeout(300)
        page.wait_for_timeout(2000)                  # time for any script a page might run
        assert _votes(app) == ([], [], True)

        down = next(u for u in local if "/f/" in u and app.signer.read_feedback(urlsplit(u).path[3:])[2] == "down")
        paper = app.signer.read_feedback(urlsplit(down).path[3:])[1]
        page.goto(down, wait_until="load")
        button = page.locator("form#vote-down button")
        box = button.bounding_box()
        assert box and box["y"] + box["height"] <= PHONE["height"], "the offered button is below the first screen"
        title = page.locator("#paper-title").bounding_box()
        assert title and title["y"] + title["height"] <= PHONE["height"]
        assert "Fewer papers like this?" in page.content() and "Do you want more" not in page.content()
        with page.expect_navigation():
            button.click()
        assert urlsplit(page.url).path.endswith("/done")
        for selector in ("#confirmation", "form#undo button"):
            box = page.locator(selector).bounding_box()
            assert box and box["y"] + box["height"] <= PHONE["height"], f"{selector} is below the first screen"
        page.wait_for_timeout(1000)
        browser.close()

    feedback, history, subscribed = _votes(app)
    assert [(f["paper"], f["vote"], f["via"]) for f in feedback] == [(paper, "down", "email")]
    assert [(h["paper"], h["vote"]) for h in history] == [(paper, "down")] and subscribed
