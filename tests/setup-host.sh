#!/usr/bin/env bash
# Set up a fresh Debian 12 machine, as root or as a user with sudo. configdrive goes into a
# virtual environment, ./.venv (Debian's python3 is "externally managed", PEP 668).
#
#   bash tests/setup-host.sh build   python3-venv, then configdrive in .venv: enough for `configdrive build`
#   bash tests/setup-host.sh         everything the whole test suite needs: the Debian packages in
#                                    tests/APT_PACKAGES and tests/**/APT_PACKAGES*, then configdrive
#                                    (editable) with its test, etcd, qmp and serve extras in .venv,
#                                    and Debian 13's cloud-init (25.1) unpacked into $CLOUD_INIT_25_1
#                                    for the offline network checks (not installed: the host keeps 22.4)
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

if [ "$mode" = all ]; then
    # Debian 13 (trixie)'s cloud-init, unpacked, not installed: the tests run its code with this
    # host's /usr/bin/python3 and PYTHONPATH (tests/readers/cloudinit_versions.py). apt fetches it
    # with a throwaway configuration (its own sources list and lists folder), so the host's apt
    # setup is untouched; the host's own Debian mirror, signed by debian-archive-keyring.
    dest="${CLOUD_INIT_25_1:-/var/cache/configdrive-ci/cloud-init-25.1}"
    if [ ! -d "$dest/usr/lib/python3/dist-packages/cloudinit" ]; then
        . /etc/os-release
        mirror=$(apt-get indextargets --format '$(REPO_URI)' "Release: ${VERSION_CODENAME:-bookworm}" \
            'Identifier: Packages' | awk 'NR == 1')
        mirror="${mirror:-http://deb.debian.org/debian/}"
        work=$(mktemp -d)
        trap '$sudo rm -rf "$work"' EXIT
        mkdir -p "$work/lists/partial" "$work/archives/partial"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$work/sources.list"
        apt_opts=(-q -o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=-
            -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/archives"
            -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root)
        echo "setup-host: cloud-init 25.1 from $mirror trixie -> $dest"
        $sudo apt-get "${apt_opts[@]}" update >/dev/null
        version=$(apt-cache "${apt_opts[@]}" show --no-all-versions cloud-init | sed -n 's/^Version: //p')
        case "$version" in 25.1*) ;; *) echo "setup-host: trixie has cloud-init '$version', not 25.1" >&2; exit 1;; esac
        (cd "$work" && $sudo apt-get "${apt_opts[@]}" download "cloud-init=$version" >/dev/null)
        $sudo rm -rf "$dest.new"
        $sudo mkdir -p "$dest.new"
        $sudo dpkg-deb -x "$work"/cloud-init_*.deb "$dest.new"
        $sudo rm -rf "$dest"
        $sudo mv "$dest.new" "$dest"
    fi
fi
