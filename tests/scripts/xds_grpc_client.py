#!/usr/bin/env python3
"""Proxyless gRPC for the end-to-end test: plain grpcio servers, and a client that
finds them through gRPC's own xDS support (GRPC_XDS_BOOTSTRAP names the control
plane). No generated code: messages are raw bytes.

    xds_grpc_client.py serve NAME
        serves remora.test.Orders/Who on 127.0.0.1 (a port of the system's
        choosing), answering NAME to every call; prints "serving PORT" once up.

    xds_grpc_client.py run TARGET [FIRST_CALL_TIMEOUT_S]
        calls Who on TARGET (e.g. xds:///orders.default.svc.cluster.local:80)
        one call after the other until killed. The first call waits for the
        channel to be ready (xDS config to arrive, up to FIRST_CALL_TIMEOUT_S,
        30 by default); if it fails the client says so and exits 1. Every
        later call is made without waiting for readiness, so a call the channel
        cannot place fails and is reported. One line per call on stdout:
            rpc ok NAME
            rpc fail CODE DETAILS

The channel to the control plane is as GRPC_XDS_BOOTSTRAP says: plaintext
(`insecure`) or TLS with a client certificate (`tls` with certificate_file,
private_key_file and ca_certificate_file).
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


def run(target: str, first_call_timeout_s: float) -> None:
    channel = grpc.insecure_channel(target)
    who = channel.unary_unary(METHOD)
    first = True
    while True:
        try:
            if first:
                reply = who(b"", timeout=first_call_timeout_s, wait_for_ready=True)
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
    args = sys.argv[1:]
    if args[:1] == ["serve"] and len(args) == 2:
        serve(args[1])
    elif args[:1] == ["run"] and len(args) in (2, 3):
        run(args[1], float(args[2]) if len(args) == 3 else FIRST_CALL_TIMEOUT_S)
    else:
        sys.exit(__doc__)
