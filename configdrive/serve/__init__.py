"""``configdrive serve``: the same seed files per VM over HTTP (OpenStack, EC2, NoCloud-net).

    tables.py     one VM's answers (path -> body), rendered once from its seed trees
    ec2.py        the EC2 listings and leaves from the config drive's meta-data.json
    addresses.py  which VM a source address belongs to (spec addresses, leases, EUI-64 of MACs)
    registry.py   the live tables: every VM's answers and claims, with change listeners
    tokens.py     IMDSv2 tokens, bound to a VM and expiring
    server.py     aiohttp's low-level server with explicit limits, and the request handler
    listeners.py  ``--listen`` sockets;  socketdir.py  one Unix socket per VM
    leases.py     ``--leases FILE``;  service.py  all of it on one event loop
    guestfwd.py   the helper qemu's ``guestfwd=...-cmd:`` runs;  qemu_args.py  qemu's arguments
    command.py    the ``serve`` options;  process.py  workers, the follower's thread, signals

The follower feeds the tables through ``configdrive.sinks.http.HttpSink``.
"""
