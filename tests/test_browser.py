"""A delivered mail and the pages behind it, in Chromium (Playwright, Debian's browser, headless):
what a reader sees at 375 and 1024 px, light and dark, and a 👍 followed from the mail to the
profile page and undone there. Screenshots are kept in tests/artifacts/."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from digestd import accounts
from live_site import ARTIFACTS, html_part, start_site

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")


@pytest.fixture
def site(tmp_path, smtp):
    rec, port = smtp
    s = start_site(tmp_path, port)
    s.deliver("2025-05-19")
    assert len(rec.messages) == 1
    s.mail = tmp_path / "mail.html"
    s.mail.write_text(html_part(rec.messages[0][2]), encoding="utf-8")
    yield s
    s.stop()


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def open_mail(browser, site, width: int, scheme: str):
    page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
    page.goto(site.mail.as_uri())
    return page


@pytest.mark.parametrize("width", [375, 1024])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_delivered_mail_reads_well_on_phone_and_desktop_in_light_and_dark(browser, site, width, scheme):
    page = open_mail(browser, site, width, scheme)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"mail-{width}-{scheme}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "horizontal scroll"
    cards = page.locator(".paper")
    assert cards.count() == 10
    for i in range(cards.count()):
        card = cards.nth(i)
        assert card.locator("h2 a").count() == 1, f"paper {i + 1} has no linked heading"
        buttons = card.locator("a.vote")
        assert buttons.count() == 2
        boxes = [buttons.nth(j).bounding_box() for j in range(2)]
        assert all(b["height"] >= 44 for b in boxes), boxes
        assert boxes[0]["y"] == boxes[1]["y"], "the vote buttons are stacked"
    text = page.inner_text("body")
    assert not re.search(r"\$[^$\s][^$]*\$", text) and "\\times" not in text
    assert "Mobi-π: GRouping 8192×8192 panoramas in 360°" in text
    background = page.evaluate("getComputedStyle(document.querySelector('.paper')).backgroundColor")
    assert (background == "rgb(255, 255, 255)") == (scheme == "light"), background
    if width == 375:
        # Compact: the first three cards fit in about two phone screens.
        third = cards.nth(2).bounding_box()
        assert third["y"] + third["height"] < 2 * 812, third


def test_the_profile_link_in_the_mail_opens_the_readers_profile(browser, site):
    page = open_mail(browser, site, 375, "light")
    page.get_by_role("link", name="Your profile and votes").click()
    page.wait_for_load_state()
    assert page.url == accounts.export_user(site.app, "alice")["profile_url"]
    assert "what your digest learns from" in page.inner_text("h1")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "the profile page scrolls sideways"


def test_a_thumbs_up_from_the_mail_shows_on_the_profile_and_is_undone_there(browser, site):
    page = open_mail(browser, site, 375, "light")
    first = page.locator(".paper").first
    title = first.locator("h2 a").inner_text()
    first.get_by_role("link", name="More like this").click()
    page.wait_for_load_state()
    assert accounts.export_user(site.app, "alice")["feedback"] == []       # a GET records nothing
    page.get_by_role("button", name="More like this").click()
    page.wait_for_load_state()
    votes = accounts.export_user(site.app, "alice")["feedback"]
    assert [v["vote"] for v in votes] == ["up"]

    page.goto(accounts.export_user(site.app, "alice")["profile_url"])
    liked = page.locator("#liked")
    assert title in liked.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "profile-375.png"), full_page=True)
    liked.get_by_role("button", name=re.compile("Undo")).first.click()
    page.wait_for_load_state()
    assert accounts.export_user(site.app, "alice")["feedback"] == []
    assert page.locator("#liked").count() == 0
    assert "is removed" in page.locator("#changed").inner_text()
    assert page.locator("#changed").bounding_box()["y"] < 300          # the confirmation is on the first screen


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_mail_and_the_readers_pages_have_no_axe_violations(browser, site, scheme):
    axe_api = pytest.importorskip("axe_playwright_python.sync_playwright", reason="axe-playwright-python is not installed")
    axe = axe_api.Axe()
    profile = accounts.export_user(site.app, "alice")["profile_url"]
    found = {}
    for name, url in [("mail", site.mail.as_uri()), ("profile", profile), ("today", profile + "/today")]:
        page = browser.new_page(viewport={"width": 375, "height": 800}, color_scheme=scheme)
        page.goto(url)
        results = axe.run(page)
        found[name] = [(v["id"], v["help"], len(v["nodes"])) for v in results.response["violations"]]
        page.close()
    assert found == {"mail": [], "profile": [], "today": []}, found
