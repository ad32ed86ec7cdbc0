#!/usr/bin/env bash
# Set up a fresh Debian 12 machine, as root or as a user with sudo. configdrive goes into a
# virtual environment, ./.venv (Debian's python3 is "externally managed", PEP 668).
#
#   bash tests/setup-host.sh build   python3-venv, then configdrive in .venv: enough for `configdrive build`
#   bash tests/setup-host.sh         everything the whole test suite needs: the Debian packages in
#                                    tests/APT_PACKAGES and tests/**/APT_PACKAGES*, then configdrive
#                                    (editable) with its test, etcd, qmp and serve extras in .venv
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
case "$mode" in build|all) ;; *) echo "usage: $0 [build|all]" >&2; exit 2;; esac
export DEBIAN_FRONTEND=noninteractive
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
packages=(python3-venv)
if [ "$mode" = all ]; then
    mapfile -t -O 1 packages < <(cat tests/APT_PACKAGES $(find tests -mindepth 2 -name 'APT_PACKAGES*') tests/APT_PACKAGES-* 2>/dev/null \
        | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
fi
echo "setup-host: apt-get install ${packages[*]}"
$sudo apt-get update -q >/dev/null
$sudo apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
[ -x .venv/bin/python ] || python3 -m venv .venv
if [ "$mode" = build ]; then
    echo "setup-host: .venv: pip install ."
    .venv/bin/python -m pip install -q --disable-pip-version-check .
else
    echo "setup-host: .venv: pip install -e .[test,etcd,qmp,serve]"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,etcd,qmp,serve]'
fi
