from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.support import infra
from tests.support.stack import MailSink, SystemStack
from tests.support.system import running_stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Module scope: Playwright's sync API runs an event loop in this thread while it is
# open, which must be gone before the asyncio tests of other modules run.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not shutil.which("chromium"):
        pytest.fail("Chromium is required for browser tests: apt-get install chromium")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def system(
    postgres_admin_url: str,
    amqp_url: str,
    migrated_templates: infra.MigratedTemplates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SystemStack]:
    # Dev mode, like `make run`: the captured-mail page is on.
    yield from running_stack(
        postgres_admin_url,
        amqp_url,
        migrated_templates,
        tmp_path_factory.mktemp("browser"),
        dev_mode=True,
    )


@pytest.fixture(scope="module")
def mail(system: SystemStack) -> MailSink:
    return MailSink(system.mail_url)
