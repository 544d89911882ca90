"""A DHCP client in a network namespace (run by test_dhcp.py): DISCOVER, REQUEST; prints the ACK's
address and options as JSON. Scapy, because it must say exactly which options it asks for."""
import json
import sys

from scapy.all import BOOTP, DHCP, IP, UDP, Ether, conf, srp1

iface, mac, vendor_class = sys.argv[1], sys.argv[2], sys.argv[3]
conf.checkIPaddr = False
chaddr = bytes.fromhex(mac) + b"\0" * 10


def exchange(options):
    packet = (Ether(src=":".join(mac[i:i + 2] for i in range(0, 12, 2)), dst="ff:ff:ff:ff:ff:ff")
              / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
              / BOOTP(chaddr=chaddr, xid=0x5EED, flags=0x8000)
              / DHCP(options=[*options, ("vendor_class_id", vendor_class.encode()),
                              ("param_req_list", [1, 3, 6, 42, 66, 150, 160]), "end"]))
    return srp1(packet, iface=iface, timeout=5, verbose=False)


offer = exchange([("message-type", "discover")])
if offer is None:
    print(json.dumps({"error": "no offer"}))
    sys.exit(1)
ack = exchange([("message-type", "request"), ("requested_addr", offer[BOOTP].yiaddr),
                ("server_id", offer[IP].src)])
options = {str(o[0]): (o[1].decode().rstrip("\0") if isinstance(o[1], bytes) else str(o[1]))
           for o in ack[DHCP].options if isinstance(o, tuple) and len(o) >= 2}
print(json.dumps({"address": ack[BOOTP].yiaddr, "options": options}))
