"""A phone's SIP multicast PnP request from a network namespace (run by test_dhcp.py): SUBSCRIBE to
224.0.1.75:5060 with Event: ua-profile, then wait for the 200 and the NOTIFY; prints them as JSON."""
import json
import socket
import sys

my_ip, mac = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((my_ip, 5062))
sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(my_ip))
sock.settimeout(5)
request = (f"SUBSCRIBE sip:MAC{mac}@224.0.1.75 SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP {my_ip}:5062;branch=z9hG4bKpnp1\r\n"
           f"From: <sip:MAC{mac}@224.0.1.75>;tag=pnp1\r\nTo: <sip:MAC{mac}@224.0.1.75>\r\n"
           f"Call-ID: pnp-{mac}@{my_ip}\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:{my_ip}:5062>\r\n"
           'Event: ua-profile;profile-type="device";vendor="Yealink";model="T46U";version="108.86.0.20"\r\n'
           "Accept: application/url\r\nExpires: 0\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
sock.sendto(request.encode(), ("224.0.1.75", 5060))
got = []
try:
    while len(got) < 2:
        got.append(sock.recvfrom(65535)[0].decode())
except socket.timeout:
    pass
print(json.dumps(got))
