"""cloud-init's own readers against a metadata service or an extracted seed; prints JSON.

Runs under Debian's /usr/bin/python3 (the cloud-init package), inside a guest namespace:
    cloudinit_http_reader.py openstack URL          MetadataReader(URL).read_v2()
    cloudinit_http_reader.py configdrive DIR        ConfigDriveReader(DIR).read_v2()
    cloudinit_http_reader.py ec2 URL [imdsv2]       ec2 helpers: get_instance_metadata/userdata
    cloudinit_http_reader.py nocloud URL_OR_DIR/    util.read_seeded (NoCloud-net's reader)
"""

import base64
import json
import sys

from cloudinit import url_helper, util
from cloudinit.sources.helpers import ec2, openstack


def _plain(value):
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode()}
    raise TypeError(type(value))


def main(mode, where, extra):
    if mode == "openstack":
        result = openstack.MetadataReader(where, timeout=5, retries=0).read_v2()
    elif mode == "configdrive":
        result = openstack.ConfigDriveReader(where).read_v2()
    elif mode == "ec2":
        headers_cb = None
        if "imdsv2" in extra:
            token = url_helper.readurl(
                f"{where}/latest/api/token",
                request_method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"},
            ).contents
            headers_cb = lambda url: {"X-aws-ec2-metadata-token": token.decode()}  # noqa: E731
        result = {
            "meta-data": ec2.get_instance_metadata(metadata_address=where, retries=0, headers_cb=headers_cb),
            "user-data": ec2.get_instance_userdata(metadata_address=where, retries=0, headers_cb=headers_cb),
        }
    elif mode == "nocloud":
        md, ud, vd = util.read_seeded(where, timeout=5, retries=0)
        result = {"meta-data": md, "user-data": ud, "vendor-data": vd}
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result, default=_plain, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
