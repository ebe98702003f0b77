"""Schemathesis hooks for the contract test (server/tests/it/contract.rs).

Payment providers sign every hook call (docs/payments.md): `Marquee-Signature: t=<unix
seconds>,v1=<hex HMAC-SHA256 of "t.body">`. Unsigned calls are all refused before the body is
read, so to test the body's contract each generated call is signed here, over the exact bytes
sent, with the secret the test configured for provider `acme` (MARQUEE_HOOK_SECRET). The
refusals of unsigned, forged and stale calls are pinned in tests/it/payments.rs.
"""

import hashlib
import hmac
import json
import os
import time

import schemathesis
from schemathesis.core import NOT_SET


@schemathesis.hook
def before_call(context, case, **kwargs):
    if not case.path.startswith("/hooks/payments/"):
        return
    if case.body is NOT_SET:
        body = b""
    elif isinstance(case.body, bytes):
        body = case.body
    else:
        body = json.dumps(case.body).encode()
        # Sent as these very bytes, so the signature covers what the server reads.
        case.body = body
    stamp = str(int(time.time()))
    secret = os.environ["MARQUEE_HOOK_SECRET"].encode()
    mac = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if case.headers is None:
        case.headers = {}
    case.headers["Marquee-Signature"] = f"t={stamp},v1={mac}"
