"""A gRPC client for sluice's tests (grpcio's generic API on raw bytes, no codegen): runs one
scenario against `sluice.test.Echo` (see grpc_peer.py) and prints ONE JSON object on stdout.

    python grpc_client.py TARGET SCENARIO [--authority NAME] [--ca CA_PEM] [--timeout SECONDS]

TARGET is host:port (sluice's HTTP entrypoint: h2c with prior knowledge; with `--ca`, its HTTPS
entrypoint, TLS with that root and SNI/`:authority` NAME). Without `--authority` the channel's
default (TARGET) is used.

Output: {"scenario", "code" (a grpc.StatusCode name), "details", "responses" (UTF-8, or
"<N bytes>" for long ones), "response_sizes", "initial_metadata", "trailing_metadata",
"elapsed_ms", and scenario extras}. Scenarios:
  unary          Unary "hello"
  status         Unary "status:7" (the server aborts with PERMISSION_DENIED, "asked for 7")
  server_stream  ServerStream "5" -> 0..4
  client_stream  ClientStream a, b, c -> "a,b,c"
  bidi           Bidi, 5 messages in lock-step: each is sent only after the previous echo came
                 back ("lockstep": true when all 5 came back that way)
  deadline       Unary "sleep:3000" with a 300 ms deadline
  unrouted       Unary "hello" (give an --authority sluice has no route for)
  big            Unary with a 1 MiB message ("echo_matches": the echo is exactly echo: + it)
  authority      Unary "authority": the :authority the server saw
  metadata       Unary "metadata": the request metadata the server saw (JSON)
  deadline_left  Unary "deadline": milliseconds left of the deadline at the server
"""

import argparse
import json
import queue
import sys
import time

import grpc

SERVICE = "/sluice.test.Echo/"
BIG = 1024 * 1024


def render(message):
    if len(message) > 4096:
        return f"<{len(message)} bytes>"
    return message.decode("utf-8", errors="replace")


def metadata_dict(md):
    out = {}
    for item in md or ():
        key, value = item[0], item[1]
        out[key] = value if isinstance(value, str) else value.decode("latin-1")
    return out


class Result:
    def __init__(self, scenario):
        self.scenario = scenario
        self.responses = []
        self.extras = {}
        self.call = None
        self.error = None

    def finish(self, elapsed_ms):
        call = self.error if self.error is not None else self.call
        code, details, initial, trailing = "UNKNOWN", None, {}, {}
        if call is not None:
            try:
                code = call.code().name
                details = call.details()
                initial = metadata_dict(call.initial_metadata())
                trailing = metadata_dict(call.trailing_metadata())
            except Exception as e:  # a connection-level error may lack some of these
                details = details or repr(e)
        out = {
            "scenario": self.scenario,
            "code": code,
            "details": details,
            "responses": [render(r) for r in self.responses],
            "response_sizes": [len(r) for r in self.responses],
            "initial_metadata": initial,
            "trailing_metadata": trailing,
            "elapsed_ms": elapsed_ms,
        }
        out.update(self.extras)
        return out


def unary_call(channel, result, request, timeout):
    call = channel.unary_unary(
        SERVICE + "Unary", request_serializer=None, response_deserializer=None
    )
    try:
        response, result.call = call.with_call(request, timeout=timeout)
        result.responses.append(response)
    except grpc.RpcError as e:
        result.error = e


def server_stream(channel, result, timeout):
    responses = channel.unary_stream(
        SERVICE + "ServerStream", request_serializer=None, response_deserializer=None
    )(b"5", timeout=timeout)
    result.call = responses
    try:
        for r in responses:
            result.responses.append(r)
    except grpc.RpcError as e:
        result.error = e


def client_stream(channel, result, timeout):
    call = channel.stream_unary(
        SERVICE + "ClientStream", request_serializer=None, response_deserializer=None
    )
    try:
        response, result.call = call.with_call(iter([b"a", b"b", b"c"]), timeout=timeout)
        result.responses.append(response)
    except grpc.RpcError as e:
        result.error = e


def bidi(channel, result, timeout):
    outbox = queue.Queue()

    def requests():
        while True:
            m = outbox.get()
            if m is None:
                return
            yield m

    responses = channel.stream_stream(
        SERVICE + "Bidi", request_serializer=None, response_deserializer=None
    )(requests(), timeout=timeout)
    result.call = responses
    lockstep = True
    round_trips = []
    try:
        for i in range(5):
            sent = f"m{i}".encode()
            start = time.monotonic()
            outbox.put(sent)
            # Blocks until this message's echo is back: the next one is not sent before.
            back = next(responses)
            round_trips.append(int((time.monotonic() - start) * 1000))
            result.responses.append(back)
            if back != b"bidi:" + sent:
                lockstep = False
        outbox.put(None)
        for r in responses:  # the end of the stream (and its status)
            result.responses.append(r)
    except StopIteration:
        lockstep = False
        outbox.put(None)
    except grpc.RpcError as e:
        lockstep = False
        result.error = e
        outbox.put(None)
    result.extras["lockstep"] = lockstep and len(round_trips) == 5
    result.extras["round_trip_ms"] = round_trips


def main():
    p = argparse.ArgumentParser()
    p.add_argument("target")
    p.add_argument("scenario")
    p.add_argument("--authority")
    p.add_argument("--ca")
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args()

    options = [
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.max_send_message_length", 16 * 1024 * 1024),
        # No retries and no reconnect delays hiding what the first attempt got.
        ("grpc.enable_retries", 0),
        ("grpc.initial_reconnect_backoff_ms", 100),
    ]
    if a.authority:
        options.append(("grpc.default_authority", a.authority))
    if a.ca:
        with open(a.ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        if a.authority:
            options.append(("grpc.ssl_target_name_override", a.authority))
        channel = grpc.secure_channel(a.target, creds, options=options)
    else:
        channel = grpc.insecure_channel(a.target, options=options)

    result = Result(a.scenario)
    start = time.monotonic()
    s = a.scenario
    if s == "unary" or s == "unrouted":
        unary_call(channel, result, b"hello", a.timeout)
    elif s == "status":
        unary_call(channel, result, b"status:7", a.timeout)
    elif s == "server_stream":
        server_stream(channel, result, a.timeout)
    elif s == "client_stream":
        client_stream(channel, result, a.timeout)
    elif s == "bidi":
        bidi(channel, result, a.timeout)
    elif s == "deadline":
        unary_call(channel, result, b"sleep:3000", 0.3)
    elif s == "big":
        message = bytes(i % 251 for i in range(BIG))
        unary_call(channel, result, message, a.timeout)
        result.extras["echo_matches"] = bool(result.responses) and result.responses[0] == (
            b"echo:" + message
        )
    elif s == "authority":
        unary_call(channel, result, b"authority", a.timeout)
    elif s == "metadata":
        unary_call(channel, result, b"metadata", a.timeout)
    elif s == "deadline_left":
        unary_call(channel, result, b"deadline", a.timeout)
    else:
        print(json.dumps({"scenario": s, "code": "NO_SUCH_SCENARIO"}))
        sys.exit(2)
    elapsed_ms = int((time.monotonic() - start) * 1000)
    print(json.dumps(result.finish(elapsed_ms)))
    channel.close()


if __name__ == "__main__":
    main()
