"""One HTTP request from inside a guest namespace; prints {"status", "body"} as JSON.

http_client.py METHOD URL [HEADER=VALUE ...]        (run by any python3)
"""

import base64
import http.client
import json
import sys
from urllib.parse import urlsplit


def main(method, url, headers):
    parts = urlsplit(url)
    host = parts.hostname
    if parts.netloc.startswith("[") and "%25" in parts.netloc:  # a zone, as cloud-init writes it
        host = parts.netloc[1 : parts.netloc.index("]")].replace("%25", "%")
    conn = http.client.HTTPConnection(host, parts.port or 80, timeout=10)
    conn.request(method, parts.path or "/", headers=headers)
    response = conn.getresponse()
    body = response.read()
    print(
        json.dumps(
            {"status": response.status, "body": base64.b64encode(body).decode(), "headers": dict(response.getheaders())}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], dict(arg.split("=", 1) for arg in sys.argv[3:]))
