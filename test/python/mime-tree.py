#!/usr/bin/python3
# An independent reading of a message: Python's email package (policy
# default, RFC 6532 aware) parses the .eml on stdin and prints its header
# fields (decoded), its MIME tree, each leaf's decoded bytes as a SHA-256 and
# size, text leaves as text, and every defect the parser noticed.
import hashlib
import json
import sys
from email import policy
from email.parser import BytesParser


def walk(part):
    node = {
        "type": part.get_content_type(),
        "disposition": part.get_content_disposition(),
        "filename": part.get_filename(),
        "cid": part.get("Content-ID"),
        "cte": part.get("Content-Transfer-Encoding"),
        "defects": [type(d).__name__ for d in part.defects],
    }
    if part.is_multipart():
        node["parts"] = [walk(p) for p in part.iter_parts()]
    else:
        payload = part.get_payload(decode=True) or b""
        node["sha256"] = hashlib.sha256(payload).hexdigest()
        node["size"] = len(payload)
        if part.get_content_maintype() == "text" and part.get_content_disposition() is None:
            node["text"] = payload.decode(part.get_content_charset() or "utf-8")
    return node


message = BytesParser(policy=policy.default).parsebytes(sys.stdin.buffer.read())
json.dump({"headers": [[k, str(v)] for k, v in message.items()], "tree": walk(message)}, sys.stdout)
