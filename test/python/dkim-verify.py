#!/usr/bin/python3
# An independent DKIM verifier: dkimpy (Debian's python3-dkim) checks every
# DKIM-Signature of the message on stdin against the one key record given,
# served as the TXT record of <selector>._domainkey.<domain> by a resolver
# of our own. Prints one JSON line: how many signatures, whether each verified.
import json
import sys

import dkim

selector, domain, record = sys.argv[1], sys.argv[2], sys.argv[3].encode()
name = f"{selector}._domainkey.{domain}".lower()


def resolve(query, timeout=5):
    q = query.decode() if isinstance(query, bytes) else query
    return record if q.rstrip(".").lower() == name else None


def verify(d, i):
    # dkimpy answers some failures (a body hash that does not match) by raising
    try:
        return bool(d.verify(idx=i, dnsfunc=resolve))
    except dkim.DKIMException:
        return False


message = sys.stdin.buffer.read()
d = dkim.DKIM(message)
count = sum(1 for k, _ in d.headers if k.lower() == b"dkim-signature")
verified = [verify(d, i) for i in range(count)]
json.dump({"signatures": count, "verified": verified}, sys.stdout)
