"""A gRPC server for sluice's tests: service `sluice.test.Echo` with generic handlers on raw
bytes (no codegen), on 127.0.0.1.

    python grpc_peer.py PORT [--tls CERT KEY]

PORT 0 lets the OS choose. Prints `READY <port>` once listening; stops on SIGTERM/SIGINT.
With `--tls` it serves h2 over TLS (a GRPCS upstream) with the PEM certificate chain and key.

Methods (requests and responses are raw bytes):
- Unary: `echo:` + the request, with initial metadata `x-initial: yes` and trailing metadata
  `x-trailer: seen`. Special requests:
  - `status:N`   aborts with status code N and message `asked for N`;
  - `sleep:MS`   sleeps MS milliseconds first (stops early when the call is cancelled);
  - `authority`  answers the `:authority` the server saw;
  - `metadata`   answers the invocation metadata as JSON (a list of [key, value]);
  - `deadline`   answers the milliseconds left before the call's deadline (`none` without one).
- ServerStream: request `N` -> N responses `0`, `1`, ...
- ClientStream: the request messages joined with `,`.
- Bidi: `bidi:` + each message, sent as soon as it arrives.
"""

import json
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "sluice.test.Echo"
# grpc's own "no deadline" is a far-future time: anything beyond a day counts as none.
NO_DEADLINE_S = 86400


def identity(b):
    return b


def unary(request, context):
    if request.startswith(b"status:"):
        n = int(request[len(b"status:"):])
        code = next(c for c in grpc.StatusCode if c.value[0] == n)
        context.abort(code, f"asked for {n}")
    if request.startswith(b"sleep:"):
        until = time.monotonic() + int(request[len(b"sleep:"):]) / 1000
        while context.is_active() and time.monotonic() < until:
            time.sleep(min(0.01, max(0.0, until - time.monotonic())))
        if not context.is_active():
            return b""
    if request == b"authority":
        # Not public API: the call details hold the :authority (`host`) the server saw.
        host = context._rpc_event.call_details.host  # noqa: SLF001
        return host if isinstance(host, bytes) else str(host).encode()
    if request == b"metadata":
        md = [[k, v if isinstance(v, str) else v.decode("latin-1")]
              for k, v in context.invocation_metadata()]
        return json.dumps(md).encode()
    if request == b"deadline":
        left = context.time_remaining()
        if left is None or left > NO_DEADLINE_S:
            return b"none"
        return str(int(left * 1000)).encode()
    context.send_initial_metadata((("x-initial", "yes"),))
    context.set_trailing_metadata((("x-trailer", "seen"),))
    return b"echo:" + request


def server_stream(request, context):
    for i in range(int(request)):
        yield str(i).encode()


def client_stream(request_iterator, context):
    return b",".join(request_iterator)


def bidi(request_iterator, context):
    for message in request_iterator:
        yield b"bidi:" + message


def main():
    args = sys.argv[1:]
    port = int(args[0])
    tls = None
    if len(args) >= 4 and args[1] == "--tls":
        with open(args[2], "rb") as f:
            cert = f.read()
        with open(args[3], "rb") as f:
            key = f.read()
        tls = grpc.ssl_server_credentials([(key, cert)])
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=identity, response_serializer=identity
            ),
            "ServerStream": grpc.unary_stream_rpc_method_handler(
                server_stream, request_deserializer=identity, response_serializer=identity
            ),
            "ClientStream": grpc.stream_unary_rpc_method_handler(
                client_stream, request_deserializer=identity, response_serializer=identity
            ),
            "Bidi": grpc.stream_stream_rpc_method_handler(
                bidi, request_deserializer=identity, response_serializer=identity
            ),
        },
    )
    # Streaming calls hold a worker each for their whole life: room for many parallel tests.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=64),
        options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ],
    )
    server.add_generic_rpc_handlers((handler,))
    address = f"127.0.0.1:{port}"
    bound = server.add_secure_port(address, tls) if tls else server.add_insecure_port(address)
    if bound == 0:
        print(f"cannot bind {address}", flush=True)
        sys.exit(1)
    server.start()
    print(f"READY {bound}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.2):
        pass
    server.stop(grace=1).wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
