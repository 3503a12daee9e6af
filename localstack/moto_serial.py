"""Run moto's server with DynamoDB requests serialised.

moto checks a DynamoDB condition and applies the write in separate steps
without a lock, and a cancelled transaction restores a snapshot of the
whole table. Under concurrent writers that lets two conditional writes of
the same version both succeed, which real DynamoDB never allows. weir's
correctness rests on those conditions (optimistic concurrency, fences,
growing epochs), so the local emulator handles one DynamoDB request at a
time. Other services stay concurrent: SQS long polls must not block each
other.

Usage: python moto_serial.py -H 127.0.0.1 -p 4566
"""

import argparse
import os
import signal
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


class SerialDynamoDB:
    """WSGI middleware: a lock around every DynamoDB request."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            # Drain the response inside the lock: the write happens while
            # the body is produced.
            body = list(self.app(environ, start_response))
        return body


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        SerialDynamoDB(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
