#!/usr/bin/env python3
"""Proxyless gRPC for the end-to-end test: plain grpcio servers, and a client that
finds them through gRPC's own xDS support (GRPC_XDS_BOOTSTRAP names the control
plane). No generated code: messages are raw bytes.

    xds_grpc_client.py serve NAME
        serves remora.test.Orders/Who on 127.0.0.1 (a port of the system's
        choosing), answering NAME to every call; prints "serving PORT" once up.

    xds_grpc_client.py run TARGET
        calls Who on TARGET (e.g. xds:///orders.default.svc.cluster.local:80)
        one call after the other until killed. The first call waits for the
        channel to be ready (xDS config to arrive, up to 30 s); every later call
        is made without waiting for readiness, so a call the channel cannot
        place fails and is reported. One line per call on stdout:
            rpc ok NAME
            rpc fail CODE DETAILS
"""
import sys
from concurrent import futures

import grpc

METHOD = "/remora.test.Orders/Who"
FIRST_CALL_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 5.0


def serve(name: str) -> None:
    answer = name.encode()

    def who(request, context):
        return answer

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "remora.test.Orders", {"Who": grpc.unary_unary_rpc_method_handler(who)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"serving {port}", flush=True)
    server.wait_for_termination()


def run(target: str) -> None:
    channel = grpc.insecure_channel(target)
    who = channel.unary_unary(METHOD)
    first = True
    while True:
        try:
            if first:
                reply = who(b"", timeout=FIRST_CALL_TIMEOUT_S, wait_for_ready=True)
                first = False
            else:
                reply = who(b"", timeout=CALL_TIMEOUT_S)
            line = f"rpc ok {reply.decode()}"
        except grpc.RpcError as e:
            details = (e.details() or "").replace("\n", " ")
            line = f"rpc fail {e.code().name} {details}"
            if first:
                # Config never arrived: say so and give up.
                print(line, flush=True)
                sys.exit(1)
        print(line, flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("serve", "run"):
        sys.exit(__doc__)
    serve(sys.argv[2]) if sys.argv[1] == "serve" else run(sys.argv[2])
