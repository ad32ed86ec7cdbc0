"""What a spec store URL may be: the words of ``--store``/``--source`` help, kept out of
``configdrive.stores`` so that commands that open no store (``build``) do not import it."""

from __future__ import annotations

#: What a store URL may be, for command-line help.
URL_HELP = (
    "dir:PATH (a folder of <vm-id>.yaml|json), etcd://HOST:PORT/PREFIX, or etcds://HOST:PORT/PREFIX "
    "(TLS; cacert=, cert=, key=, user=, password-file= or the ETCDCTL_* variables, as etcdctl)"
)
