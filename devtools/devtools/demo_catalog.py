"""A few offerings for the demo coach, so ``make run`` opens on a storefront with something in it.

Goes through the public API like any program would (log in, then the
catalog's coach API); does nothing when the demo business already has
offerings. Returns the storefront path, or None when it could not be set up.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

DEMO_OFFERINGS: list[dict[str, Any]] = [
    {
        "name": "Discovery call",
        "description": "Thirty minutes to talk about where you are and where you want to be.",
        "kind": "appointment",
        "details": {"duration_minutes": 30},
        "billing": {"type": "free"},
        "price_minor": 0,
    },
    {
        "name": "Six-session coaching package",
        "description": "Six one-hour sessions to use within three months.",
        "kind": "engagement",
        "details": {"credits": 6, "credit_expiry_days": 90},
        "billing": {"type": "one_time"},
        "price_minor": 54000,
    },
    {
        "name": "Monthly coaching",
        "description": "Two sessions a month and messaging in between. Cancel any time.",
        "kind": "package",
        "details": {"includes": ["Two 50-minute sessions", "Messaging between sessions"]},
        "billing": {"type": "recurring", "interval": "month", "interval_count": 1},
        "price_minor": 18000,
    },
]


def _call(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    url = f"{base}{path}"  # our own gateway, http(s) only
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def ensure_demo_catalog(base: str, email: str, password: str) -> str | None:
    try:
        login = _call(
            base, "POST", "/api/v1/clients/sessions", {"email": email, "password": password}
        )
        token = login["access_token"]
        me = _call(base, "GET", "/api/v1/clients/me", token=token)
        business = me["businesses"][0]
        offerings = f"/api/v1/catalog/businesses/{business['id']}/offerings"
        if not _call(base, "GET", offerings, token=token)["items"]:
            ids = []
            for offering in DEMO_OFFERINGS:
                body = {**offering, "currency": "USD", "visibility": "public"}
                created = _call(base, "POST", offerings, body, token)
                _call(base, "POST", f"{offerings}/{created['id']}/publish", token=token)
                ids.append(created["id"])
            _call(
                base,
                "POST",
                f"/api/v1/catalog/businesses/{business['id']}/collections",
                {
                    "name": "Programs for clients",
                    "description": "What our established clients can book again in one click.",
                    "offering_ids": ids[1:],
                    "in_app": True,
                    "established_only": True,
                },
                token,
            )
    except (OSError, KeyError, IndexError, TypeError, ValueError):  # never stops make run
        return None
    # The catalog learns the business (and its slug) from an event: wait for it briefly.
    path = f"/b/{business['slug']}"
    for _ in range(20):
        try:
            with urllib.request.urlopen(f"{base}{path}", timeout=5):  # noqa: S310
                return path
        except OSError:
            time.sleep(0.5)
    return path
