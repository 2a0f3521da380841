"""Run ``localstripe`` with a webhook endpoint already registered.

localstripe keeps its webhook endpoints in memory only (``make run`` registers
the gateway's ``/webhooks/stripe`` after every start, see
``devtools.processes.register_stripe_webhook``). In a container it may be
restarted on its own, so the endpoint is registered in-process from the
environment before the server starts:

    LOCALSTRIPE_WEBHOOK_URL     e.g. http://gateway:8000/webhooks/stripe
    LOCALSTRIPE_WEBHOOK_SECRET  the same value as PAYMENTS_STRIPE_WEBHOOK_SECRET

Arguments are localstripe's own (``--port 8420 --from-scratch``).
"""

from __future__ import annotations

import os
import sys

from localstripe.server import start
from localstripe.webhooks import register_webhook

WEBHOOK_NAME = "clientele"  # the name make run registers it under


def main() -> None:
    url = os.environ.get("LOCALSTRIPE_WEBHOOK_URL", "")
    secret = os.environ.get("LOCALSTRIPE_WEBHOOK_SECRET", "")
    if url and secret:
        register_webhook(WEBHOOK_NAME, url, secret, None)
        print(f"localstripe: webhook {WEBHOOK_NAME!r} -> {url}", flush=True)
    elif url or secret:
        sys.exit("set both LOCALSTRIPE_WEBHOOK_URL and LOCALSTRIPE_WEBHOOK_SECRET, or neither")
    sys.argv = ["localstripe", *sys.argv[1:]]
    start()


if __name__ == "__main__":
    main()
