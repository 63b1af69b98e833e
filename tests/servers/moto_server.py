"""Local AWS twins for provider tests, bound to 127.0.0.1 only.

- ``moto_server()``: moto in server mode (a real HTTP endpoint boto3 talks to), on a free port.
- ``FaultProxy``: an HTTP proxy in front of it that answers the next N requests with a canned
  failure (throttling, 503, 403...) and forwards the rest, counting every request.
- ``SilentServer``: accepts connections and never answers, for read timeouts.
- ``ClosingServer``: reads each request and closes the connection without an answer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import re
import socket
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's threaded server on a free port; yield its endpoint URL; stop it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        yield f"http://{HOST}:{port}"
    finally:
        server.stop()


def reset_moto(endpoint: str) -> None:
    """Forget every resource moto holds (between tests sharing one server)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def set_eks_nodegroup(region: str, cluster: str, nodegroup: str, status: str,
                      created_at: dt.datetime | None = None) -> None:
    """Put an EKS node group that ``moto_server()`` (in this process) holds in ``status``, made at
    ``created_at``: moto makes every node group ACTIVE and has no call that fails or deletes one slowly
    (CREATING, UPDATING, DELETING, CREATE_FAILED, DELETE_FAILED, DEGRADED), and times it by the clock."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.eks.models import eks_backends

    group = eks_backends[DEFAULT_ACCOUNT_ID][region].clusters[cluster].nodegroups[nodegroup]
    group.status = status
    if created_at is not None:
        group.created_at = created_at


@dataclass(frozen=True)
class Fault:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def query_error(code: str, message: str, status: int = 400) -> Fault:
    """An error as AWS query-protocol services (Auto Scaling, IAM...) send it."""
    body = (f'<ErrorResponse xmlns="https://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>")
    return Fault(status, body.encode(), {"Content-Type": "text/xml"})


def ec2_error(code: str, message: str, status: int = 400) -> Fault:
    """An error as EC2 sends it (its own query-protocol shape)."""
    body = (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
            "<RequestID>fault</RequestID></Response>")
    return Fault(status, body.encode(), {"Content-Type": "text/xml"})


def scaling_activity(group: str, status: str, message: str, started: dt.datetime | None = None) -> Fault:
    """DescribeScalingActivities' answer (moto's is always empty): one activity of ``group``, started at
    ``started`` (now), with ``status`` (Failed) and ``message`` (EC2's, for a launch it refused)."""
    when = (started or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = ('<DescribeScalingActivitiesResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
            "<DescribeScalingActivitiesResult><Activities><member>"
            f"<ActivityId>{uuid.uuid4()}</ActivityId><AutoScalingGroupName>{group}</AutoScalingGroupName>"
            f"<Description>Launching a new EC2 instance.  Status Reason: {message}</Description>"
            "<Cause>a user request update of AutoScalingGroup constraints changing the desired capacity</Cause>"
            f"<StartTime>{when}</StartTime><EndTime>{when}</EndTime><StatusCode>{status}</StatusCode>"
            f"<StatusMessage>{message}</StatusMessage><Progress>100</Progress>"
            "</member></Activities></DescribeScalingActivitiesResult>"
            "<ResponseMetadata><RequestId>fault</RequestId></ResponseMetadata></DescribeScalingActivitiesResponse>")
    return Fault(200, body.encode(), {"Content-Type": "text/xml"})


def instances_pending(body: bytes) -> bytes:
    """DescribeAutoScalingGroups' answer with every instance Pending: launched by moto, never in service
    (as a group's whose instances EC2 cannot give)."""
    return body.replace(b"<LifecycleState>InService</LifecycleState>", b"<LifecycleState>Pending</LifecycleState>")


def json_error(code: str, message: str, status: int) -> Fault:
    """An error as AWS rest-json services (EKS...) send it."""
    return Fault(status, f'{{"message": "{message}"}}'.encode(),
                 {"Content-Type": "application/json", "x-amzn-ErrorType": code})


class FaultProxy:
    """Forwards requests to ``upstream`` except the next ``n`` set by ``fail_next``, which get ``fault``;
    ``answer`` and ``rewrite`` change every answer to one query-protocol action from then on."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.requests = 0
        self._faults: list[Fault | None] = []  # None: forwarded
        # Action=... -> a canned answer, or what to make of the upstream's answer body
        self._answers: dict[str, Fault] = {}
        self._rewrites: dict[str, Callable[[bytes], bytes]] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests += 1
                    fault = proxy._faults.pop(0) if proxy._faults else None
                    action = re.search(rb"(?:^|&)Action=(\w+)", body)
                    name = action.group(1).decode() if action else ""
                    fault = fault or proxy._answers.get(name)
                    rewrite = proxy._rewrites.get(name) or next(
                        (f for key, f in proxy._rewrites.items() if key.startswith("/") and key in self.path), None)
                if fault is not None:
                    self._send(fault.status, fault.headers, fault.body)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    if rewrite is not None:
                        payload = rewrite(payload)
                    skip = {"connection", "transfer-encoding", "content-length"}
                    self._send(response.status, {k: v for k, v in response.getheaders() if k.lower() not in skip},
                               payload)
                finally:
                    conn.close()

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def fail_next(self, n: int, fault: Fault) -> None:
        with self._lock:
            self._faults = [fault] * n
            self.requests = 0

    def answer(self, action: str, fault: Fault) -> None:
        """Answer every request of ``action`` (a query-protocol Action, DescribeScalingActivities) with ``fault``."""
        with self._lock:
            self._answers[action] = fault

    def rewrite(self, action: str, change: Callable[[bytes], bytes]) -> None:
        """Forward every request of ``action`` (or whose path contains it, where it starts with "/": a
        rest-json service's, EKS's), and answer with ``change`` of the upstream's answer body."""
        with self._lock:
            self._rewrites[action] = change

    def fail_after(self, forwarded: int, fault: Fault) -> None:
        """Forward the next ``forwarded`` requests, then answer one with ``fault``."""
        with self._lock:
            self._faults = [None] * forwarded + [fault]
            self.requests = 0

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class SilentServer:
    """Accepts TCP connections and never answers: every read from it times out."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((HOST, 0))
        self._socket.listen(16)  # the kernel completes handshakes; nobody reads or writes
        self.endpoint = f"http://{HOST}:{self._socket.getsockname()[1]}"

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._socket.close()


class ClosingServer:
    """Reads each request and closes the connection without answering (a proxy or load balancer
    that drops it): the client sees "Remote end closed connection without response"."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((HOST, 0))
        self._socket.listen(16)
        self.endpoint = f"http://{HOST}:{self._socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(5)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk

    def __enter__(self) -> ClosingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._socket.close()
        self._thread.join(timeout=5)


def free_port() -> int:
    """A port nothing listens on (for "connection refused")."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
