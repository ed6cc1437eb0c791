#!/usr/bin/env python3
"""Bind a listening socket on 127.0.0.1:0, write its address to ADDR_FILE, and exec
COMMAND with the socket as file descriptor 3.

HAProxy cannot bind port 0 itself, but `bind fd@3` serves an inherited socket: this
keeps the benchmark on kernel-chosen ports, with no race for a free port.

usage: bind-fd.py ADDR_FILE -- COMMAND [ARG...]
"""
import os
import socket
import sys


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit(__doc__)
    addr_file, command = sys.argv[1], sys.argv[3:]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    host, port = sock.getsockname()
    tmp = addr_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{host}:{port}\n")
    os.rename(tmp, addr_file)
    if sock.fileno() != 3:
        os.dup2(sock.fileno(), 3)
    os.set_inheritable(3, True)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
