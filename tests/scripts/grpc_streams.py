#!/usr/bin/env python3
"""A gRPC server and client with client-streaming and bidirectional-streaming
methods, for the transparent-mode test (no generated code: raw bytes messages).

    grpc_streams.py serve PORT          serves test.Streams on 127.0.0.1:PORT
    grpc_streams.py call HOST:PORT      calls both methods; prints one line each

Collect (client streaming): the server answers once with the messages joined by
commas. Chat (bidirectional): the server answers each message with "echo:" and
the message, as it arrives.
"""
import sys
from concurrent import futures

import grpc

SERVICE = "test.Streams"


def collect(request_iterator, context):
    return b",".join(request_iterator)


def chat(request_iterator, context):
    for message in request_iterator:
        yield b"echo:" + message


def serve(port: str) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("serving", flush=True)
    server.wait_for_termination()


def call(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        collect_call = channel.stream_unary(f"/{SERVICE}/Collect")
        joined = collect_call(iter([b"a", b"b", b"c"]), timeout=10)
        print("collect", joined.decode())
        chat_call = channel.stream_stream(f"/{SERVICE}/Chat")
        replies = [r.decode() for r in chat_call(iter([b"1", b"2", b"3"]), timeout=10)]
        print("chat", " ".join(replies))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("serve", "call"):
        sys.exit(__doc__)
    serve(sys.argv[2]) if sys.argv[1] == "serve" else call(sys.argv[2])
