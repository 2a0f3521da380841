"""localstripe (an offline fake of Stripe's API) as a process of its own, for tests.

``localstripe_server`` starts ``localstripe --port <free port> --from-scratch`` for a
test module, waits until it answers, and stops it afterwards. It fails loudly
(never skips) when it cannot start. ``LocalStripe`` also has the few calls a
test makes as Stripe.js or the dashboard would (cards, confirmations, counts).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

API_KEY = "sk_test_local"
PUBLISHABLE_KEY = "pk_test_local"
TEST_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"  # attaches fine, every charge is declined
THREE_D_SECURE_CARD = "4000002500003155"  # needs authentication on every payment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _executable() -> list[str]:
    beside = Path(sys.executable).with_name("localstripe")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("localstripe")
    if found:
        return [found]
    return [sys.executable, "-m", "localstripe"]


@dataclass
class LocalStripe:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def js_url(self) -> str:
        return f"{self.base_url}/js.stripe.com/v3/"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- what Stripe.js does in the buyer's browser --------------------------------

    async def _post(self, path: str, data: dict[str, Any], key: str = API_KEY) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            if key.startswith("pk_"):  # Stripe.js sends the publishable key in the form
                response = await http.post(path, data={**data, "key": key})
            else:
                response = await http.post(path, data=data, auth=(key, ""))
        assert response.status_code < 500, response.text
        return {"_status": response.status_code, **response.json()}

    async def create_card(self, number: str = TEST_CARD) -> str:
        """A PaymentMethod for a card, as Stripe.js makes from the card element."""
        created = await self._post(
            "/v1/payment_methods",
            {
                "type": "card",
                "card[number]": number,
                "card[exp_month]": "12",
                "card[exp_year]": "2034",
                "card[cvc]": "123",
            },
        )
        assert created["_status"] == 200, created
        return str(created["id"])

    async def confirm_card_setup(self, client_secret: str, number: str = TEST_CARD) -> str:
        """``stripe.confirmCardSetup(client_secret, {payment_method: {card}})`` as Stripe.js
        does it (with the publishable key, completing 3-D Secure when asked): the new
        PaymentMethod's id, which the page then sends to /pay."""
        setup_intent_id = client_secret.split("_secret_", 1)[0]
        path = f"/v1/setup_intents/{setup_intent_id}/confirm"
        confirmed = await self._post(
            path,
            {
                "client_secret": client_secret,
                "use_stripe_sdk": "true",
                "payment_method_data[type]": "card",
                "payment_method_data[card][number]": number,
                "payment_method_data[card][exp_month]": "12",
                "payment_method_data[card][exp_year]": "2034",
                "payment_method_data[card][cvc]": "123",
            },
            key=PUBLISHABLE_KEY,
        )
        assert confirmed["_status"] == 200, confirmed
        if confirmed["status"] == "requires_action":  # the buyer completes 3-D Secure
            confirmed = await self._post(
                path, {"client_secret": client_secret, "use_stripe_sdk": "true"}, PUBLISHABLE_KEY
            )
        assert confirmed["status"] == "succeeded", confirmed
        return str(confirmed["payment_method"])

    async def authenticate(self, client_secret: str, success: bool = True) -> None:
        """The 3-D Secure step of ``stripe.confirmCardPayment`` (localstripe's own route)."""
        intent_id = client_secret.split("_secret_", 1)[0]
        done = await self._post(
            f"/v1/payment_intents/{intent_id}/_authenticate",
            {"client_secret": client_secret, "success": "true" if success else "false"},
            key=PUBLISHABLE_KEY,
        )
        assert done["_status"] == 200, done

    # -- what a test reads ------------------------------------------------------------

    async def list_all(self, kind: str, **params: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            response = await http.get(
                f"/v1/{kind}", params={"limit": "100", **params}, auth=(API_KEY, "")
            )
        assert response.status_code == 200, response.text
        return list(response.json()["data"])

    async def count(self, kind: str) -> int:
        return len(await self.list_all(kind))

    async def retrieve(self, kind: str, object_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            response = await http.get(f"/v1/{kind}/{object_id}", auth=(API_KEY, ""))
        assert response.status_code == 200, response.text
        return dict(response.json())


def start_localstripe(timeout: float = 30) -> LocalStripe:
    port = free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="localstripe-", suffix=".log", delete=False)  # noqa: SIM115
    log_path = Path(log_file.name)
    try:
        process = subprocess.Popen(
            [*_executable(), "--port", str(port), "--from-scratch"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    except OSError as exc:
        pytest.fail(f"localstripe could not be started: {exc}", pytrace=False)
    finally:
        log_file.close()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"localstripe exited with {process.returncode} while starting:\n"
                f"{log_path.read_text(errors='replace')}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(f"{base_url}/js.stripe.com/v3/", timeout=1) as answer:
                if answer.status == 200:
                    return LocalStripe(base_url, process, log_path)
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    stop_localstripe(LocalStripe(base_url, process, log_path))
    pytest.fail(
        f"localstripe did not answer on {base_url} within {timeout}s:\n"
        f"{log_path.read_text(errors='replace')}",
        pytrace=False,
    )


def stop_localstripe(server: LocalStripe) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)
    server.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def localstripe_server() -> Iterator[LocalStripe]:
    """localstripe for the tests of one module (a process of its own, on a free port)."""
    server = start_localstripe()
    yield server
    stop_localstripe(server)
