#!/bin/sh
# Installs what bench/run.py needs on a fresh Debian 12 machine: the peer tools from Debian, and
# openstacksdk into bench/.venv (a bench-only venv; it is not a dependency of configdrive).
set -eu
cd "$(dirname "$0")"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends genisoimage xorriso cloud-image-utils hyperfine python3-venv wrk nginx-light
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet openstacksdk
echo "ready: python3 bench/run.py"
