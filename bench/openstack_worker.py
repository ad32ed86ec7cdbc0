"""Times openstacksdk's ``openstack.baremetal.configdrive.build`` in-process; run by bench/run.py
with bench/.venv's Python (openstacksdk is a bench-only dependency). Prints one JSON line."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import resource
import statistics
import sys
import time
from pathlib import Path

from openstack.baremetal import configdrive


def main() -> None:
    payload = json.loads(Path(sys.argv[1]).read_text())
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else payload["runs"]

    def build() -> str:
        return configdrive.build(
            payload["metadata"],
            user_data=payload["user_data"],
            versions=payload["versions"],
            network_data=payload["network_data"],
            vendor_data=payload["vendor_data"],
        )

    for _ in range(min(runs, 3)):
        build()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        encoded = build()
        times.append(time.perf_counter() - t0)
    image = gzip.decompress(base64.b64decode(encoded))
    usage = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    print(
        json.dumps(
            {
                "times": times,
                "median": statistics.median(times),
                "size": len(image),
                "encoded": len(encoded),
                "sha256": hashlib.sha256(image).hexdigest(),
                "rss": usage * 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
