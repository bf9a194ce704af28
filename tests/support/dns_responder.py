"""A DNS responder for ACME tests (Pebble's -dnsserver), on 127.0.0.1 UDP and TCP.

- A: 127.0.0.1 for every name (Pebble then validates HTTP-01 and TLS-ALPN-01 on 127.0.0.1);
- AAAA: no answer (Pebble asks AAAA first and would dial the first address it gets);
- TXT: with --moto URL, the TXT records of moto's Route53 read at query time (DNS-01 through
  Route53 without copying records anywhere); without it, no answer.

Prints "ready" once both sockets are bound. Usage:
    python dns_responder.py --port PORT [--moto http://127.0.0.1:MOTO_PORT]
"""

import argparse
import sys
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

from dnslib import QTYPE, RR, TXT, A
from dnslib.server import BaseResolver, DNSServer

NS = "{https://route53.amazonaws.com/doc/2013-04-01/}"
# moto routes requests by the credential scope of a SigV4 Authorization header (it does not
# check the signature); without one a request is taken as S3.
AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/route53/aws4_request, "
    "SignedHeaders=host, Signature=0"
)


def moto_get(moto, path):
    req = urllib.request.Request(moto.rstrip("/") + path, headers={"Authorization": AUTH})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return ET.fromstring(resp.read())


def txt_values(moto, name):
    """TXT values for `name` (with trailing dot) in every moto zone that contains it."""
    name = name.lower()
    values = []
    zones = moto_get(moto, "/2013-04-01/hostedzone")
    for zone in zones.iter(NS + "HostedZone"):
        zone_name = zone.findtext(NS + "Name", "").lower()
        if not zone_name.endswith("."):
            zone_name += "."
        if not (name == zone_name or name.endswith("." + zone_name)):
            continue
        zone_id = zone.findtext(NS + "Id", "").split("/")[-1]
        query = urllib.parse.urlencode({"name": name, "type": "TXT"})
        rrsets = moto_get(moto, f"/2013-04-01/hostedzone/{zone_id}/rrset?{query}")
        for rrset in rrsets.iter(NS + "ResourceRecordSet"):
            rname = rrset.findtext(NS + "Name", "").lower().replace("\\052", "*")
            if not rname.endswith("."):
                rname += "."
            if rname != name or rrset.findtext(NS + "Type") != "TXT":
                continue
            for value in rrset.iter(NS + "Value"):
                text = (value.text or "").strip()
                if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
                    text = text[1:-1]
                values.append(text)
    return values


class Resolver(BaseResolver):
    def __init__(self, moto):
        self.moto = moto

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        qtype = QTYPE[q.qtype]
        if qtype == "A":
            reply.add_answer(RR(q.qname, QTYPE.A, rdata=A("127.0.0.1"), ttl=0))
        elif qtype == "TXT" and self.moto:
            try:
                for value in txt_values(self.moto, str(q.qname)):
                    reply.add_answer(RR(q.qname, QTYPE.TXT, rdata=TXT(value), ttl=0))
            except Exception as e:  # noqa: BLE001 - report and answer empty
                print(f"moto lookup for {q.qname} failed: {e}", file=sys.stderr, flush=True)
        return reply


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--moto", default=None)
    args = parser.parse_args()
    resolver = Resolver(args.moto)
    servers = [
        DNSServer(resolver, port=args.port, address="127.0.0.1", tcp=False),
        DNSServer(resolver, port=args.port, address="127.0.0.1", tcp=True),
    ]
    for s in servers:
        s.start_thread()
    print("ready", flush=True)
    while all(s.isAlive() for s in servers):
        time.sleep(0.5)


if __name__ == "__main__":
    main()
