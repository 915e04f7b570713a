#!/usr/bin/env python3
"""A Sluice webhook receiver that checks every post's signature.

    python3 webhook_receiver.py --port 8080 --secret-file hook.secret --out events.jsonl

Each verified event is appended to --out as one JSON line and answered 200;
a post with a missing, stale or wrong signature is answered 401 and kept
nowhere. Events can arrive more than once (delivery is at least once):
de-duplicate by their "id". --fail-first N answers the first N posts with
503, to watch Sluice retry. Python 3 standard library only.
"""

import argparse
import hashlib
import hmac
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE = 300  # seconds a signature's timestamp may differ from our clock


def verify(secret: bytes, header: str, body: bytes, now: float) -> bool:
    """True when `header` (Sluice-Signature) signs `body` with `secret`."""
    fields = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for key, value in fields if key == "t"]
    signatures = [value for key, value in fields if key == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        return False
    if abs(now - int(stamps[0])) > TOLERANCE:
        return False
    expected = hmac.new(secret, stamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in signatures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--out", required=True, help="file the verified events are appended to")
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args()
    with open(args.secret_file, "rb") as f:
        secret = f.read().rstrip(b"\r\n")
    state = {"posts": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state["posts"] += 1
            if state["posts"] <= args.fail_first:
                self.answer(503)
                return
            if not verify(secret, self.headers.get("Sluice-Signature", ""), body, time.time()):
                self.answer(401)
                return
            event = json.loads(body)
            with open(args.out, "a") as out:
                out.write(json.dumps(event) + "\n")
            self.answer(200)

        def answer(self, code):
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
