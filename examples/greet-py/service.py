"""greet-py: a service of one's own in Python, served to nexo over HTTP
JSON-RPC. It is the method greet.py, with the same contract as
examples/greet-go: params {"name": string} (1 to 64 characters), result
{"greeting": "Hello, <name>!"}, idempotent.

    python3 examples/greet-py/service.py --addr 127.0.0.1:8000   # serves http://127.0.0.1:8000/rpc
    nexo worker --nats nats://127.0.0.1:4222 --upstream http://127.0.0.1:8000/rpc   # greet.py joins the cluster's catalog
    nexo serve --upstream http://127.0.0.1:8000/rpc                                # or one server's, without NATS

It needs no install step: it finds nexo_client in this checkout. The
helper it uses, nexo_client.service, is described in clients/python/README.md.
"""
import os
import sys
from typing import Annotated, TypedDict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))

from nexo_client.service import Example, Schema, Service  # noqa: E402 - after the path is set


class Greeting(TypedDict):
    greeting: str


svc = Service("greet-py")


@svc.method("greet.py", summary="greets a name of 1 to 64 characters", idempotent=True,
            examples=[({"name": "Ann"}, {"greeting": "Hello, Ann!"}), Example({"name": ""}, error="BAD_PAYLOAD")])
def greet(name: Annotated[str, Schema(min_length=1, max_length=64, description="who to greet")]) -> Greeting:
    return {"greeting": f"Hello, {name}!"}


if __name__ == "__main__":
    sys.exit(svc.main())
