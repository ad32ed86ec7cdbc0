"""What a spec may hold at most: sizes, counts, depth and digits, and the characters no line may carry.

One dict, so a test (or a caller) that changes an entry changes it for the YAML reader, the
checks of Python data and the semantic checks alike.
"""

from __future__ import annotations

import re

#: Documented limits; each exceeded one is reported with the field that hit it. Item counts
#: (keys, NICs, addresses, parts, ...) are ``maxItems``/``maxProperties`` in the JSON Schema.
LIMITS = {
    "spec_bytes": 64 * 1024 * 1024,  # a spec file or etcd value
    "payload_bytes": 16 * 1024 * 1024,  # user_data / vendor_data, as rendered
    "file_bytes": 16 * 1024 * 1024,  # one entry of `files`
    "files_total_bytes": 64 * 1024 * 1024,  # all of `files`
    "depth": 64,  # lists and mappings inside each other, the spec's own mapping included
    "values": 20_000,  # scalars, lists and mappings (keys included), every alias expanded
    "network_entries": 256,  # addresses, routes and DNS servers, each over all interfaces
    "number_chars": 4300,  # digits of a number: Python prints no int longer than that
}

#: An integer must lie strictly between -MAX_INT and MAX_INT (``LIMITS["number_chars"]`` digits).
MAX_INT = 10 ** LIMITS["number_chars"]

#: Characters that end or break a line somewhere (C0, DEL, C1, U+2028/9): never in a value that
#: reaches a line-oriented file (authorized_keys, headers, paths, names).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
