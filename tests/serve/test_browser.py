"""The web page in headless Chromium (Debian's, driven by Playwright): type a text, see the
prediction, correct its label with one click, find the correction in the store and the Recent
tab, and label the prediction sampled for the audit on the Audit tab; a token model's entities are
corrected and audited by clicking words."""

import contextlib
import json
import os
import shutil
import threading

import pytest
import uvicorn

from fmloop.core.machine import free_port
from fmloop.feedback.store import Store
from fmloop.serve.app import create_app
from fmloop.serve.config import ServeConfig
from fmloop.serve.ready import wait_until_ready

CHROMIUM = os.environ.get("FMLOOP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's chromium)"),
]
# Without these the browser keeps trying to reach Google's services on a closed network.
QUIET = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def serving(model, tmp_path):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ServeConfig(model=str(model), database=db, audit_fraction=1.0)),
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until_ready(f"http://127.0.0.1:{port}", timeout_s=120)  # a hang guard
    yield f"http://127.0.0.1:{port}", db
    server.should_exit = True
    thread.join(30)


def open_and_predict(p, url: str, text: str):
    """(browser, page): the page once it describes the model, with `text` predicted."""
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=QUIET)
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#model:has-text('version')")
    page.fill("#text", text)
    page.click("#go")
    page.wait_for_selector("#result:not([hidden])")
    return browser, page


@pytest.fixture
def live_server(text_run, tmp_path):
    with serving(text_run, tmp_path) as served:
        yield served


def test_predict_correct_and_find_the_feedback(live_server, tmp_path):
    url, db = live_server
    with playwright.sync_playwright() as p:
        browser, page = open_and_predict(p, url, "my friend sees the river and it was great today")
        predicted = page.inner_text("#predicted")
        assert predicted in ("negative", "positive")
        assert page.locator("#bars .bar").count() == 2
        page.wait_for_selector("#why:not([hidden])")  # the answer's words, shaded by attribution
        assert page.locator("#why-words span").count() == 10 and predicted in page.inner_text("#why-note")
        other = "negative" if predicted == "positive" else "positive"
        page.click(f"#labels button[data-label='{other}']")
        page.wait_for_selector("#feedback-status.ok")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        page.click("#tab-recent")
        page.wait_for_selector(f"#recent-rows tr[data-corrected='{other}']")
        page.click("#tab-audit")  # every prediction is sampled here (audit_fraction 1)
        page.click("#audit-rows button[data-label='positive']")
        page.wait_for_selector("#audit-status.ok")
        assert page.locator("#audit-rows tr").count() == 0
        browser.close()
    store = Store.open(db)
    audit, correction = store.recent_feedback()
    assert correction.label == other and store.prediction(correction.prediction_id).label == predicted
    assert (audit.kind, audit.label, audit.prediction_id) == ("audit", "positive", correction.prediction_id)
    store.close()


def test_a_tagger_is_corrected_and_audited_by_clicking_words(token_run, tmp_path):
    with serving(token_run, tmp_path) as (url, db), playwright.sync_playwright() as p:
        browser, page = open_and_predict(p, url, "we saw tom smith in rome today")
        page.wait_for_selector("#entities:not([hidden])")
        assert page.locator("#entities mark").count() == 2  # tom smith (PER), rome (LOC)
        assert page.locator("#labels button.word.typed").count() == 3  # the editor starts from the answer
        page.click("#labels button.word[data-index='6']")  # "today": LOC, one place with "rome"
        page.click("#labels .send-entities")
        page.wait_for_selector("#feedback-status.ok")
        page.click("#tab-recent")  # the answer and the correction as entities, not tag lists
        page.wait_for_selector("#recent-rows td:has-text('rome today (LOC)')")
        assert "tom smith (PER), rome (LOC)" in page.inner_text("#recent-rows")
        page.click("#tab-audit")  # every prediction is sampled here (audit_fraction 1)
        for index, clicks in (("2", 2), ("3", 2), ("5", 1)):  # tom, smith: LOC then PER; rome: LOC
            for _ in range(clicks):
                page.click(f"#audit-rows button.word[data-index='{index}']")
        page.click("#audit-rows .send-entities")
        page.wait_for_selector("#audit-status.ok")
        browser.close()
    store = Store.open(db)
    audit, correction = store.recent_feedback()
    assert json.loads(correction.label) == ["O", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    assert json.loads(audit.label) == ["O", "O", "B-PER", "I-PER", "O", "B-LOC", "O"] and audit.kind == "audit"
    store.close()
