"""Runs a sipvicious tool (Debian `sipvicious`) as a scanner that hides: with a desk phone's
User-Agent instead of its own "friendly-scanner" (which the box drops on sight), and from a chosen
loopback address, so a ban it earns does not hit the rest of the test.

    python sipvicious_as_phone.py FROM_ADDRESS svwar|svcrack|svmap ARGS...
"""
import socket
import sys

sys.path.insert(0, "/usr/share/sipvicious")
from sipvicious.libs import svhelper  # noqa: E402

PHONE_AGENT = "Yealink SIP-T46U 66.86.0.15"


def main() -> None:
    source, tool = sys.argv[1], sys.argv[2]
    del sys.argv[1:3]
    defaults = list(svhelper.makeRequest.__defaults__)
    defaults[defaults.index("friendly-scanner")] = PHONE_AGENT
    svhelper.makeRequest.__defaults__ = tuple(defaults)
    bind = socket.socket.bind

    def bind_from(sock: socket.socket, address: tuple) -> None:
        bind(sock, (source if address[0] in ("", "0.0.0.0") else address[0], address[1]))
    socket.socket.bind = bind_from
    module = __import__(f"sipvicious.{tool}", fromlist=["main"])
    module.main()


if __name__ == "__main__":
    main()
