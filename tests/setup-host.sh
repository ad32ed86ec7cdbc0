#!/usr/bin/env bash
# Install everything the whole test suite needs on a fresh Debian 12 machine: the Debian
# packages listed in tests/APT_PACKAGES and tests/**/APT_PACKAGES*, then configdrive itself
# with its test, etcd and qmp extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
mapfile -t packages < <(cat tests/APT_PACKAGES $(find tests -mindepth 2 -name 'APT_PACKAGES*') tests/APT_PACKAGES-* 2>/dev/null \
    | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
echo "setup-host: apt-get install ${packages[*]}"
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
echo "setup-host: pip install -e .[test,etcd,qmp]"
python3 -m pip install -q --disable-pip-version-check -e '.[test,etcd,qmp]'
