"""The cached guests, one per generation: find the host's Debian mirror, hash the recipe, build once.

A generation (:data:`GENERATIONS`) is a Debian suite with its package list and network stack:
Debian 12 (cloud-init 22.4, ifupdown) and Debian 13 (cloud-init 25.1, netplan +
systemd-networkd + systemd-resolved, as Debian's own cloud images). Each image lives in
``${CONFIGDRIVE_VM_CACHE:-/var/cache/configdrive-vm}/<recipe hash>/`` and is rebuilt only when
its generation record or a file under ``tests/vm/guest/`` changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

GUEST_DIR = Path(__file__).parent / "guest"
STALE_AFTER = 2 * 86400.0
APT_DIRS = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
OS_RELEASE = Path("/etc/os-release")
#: Installed in every generation (with --no-install-recommends).
BASE_PACKAGES = (
    "systemd-sysv", "udev", "dbus", "linux-image-amd64", "cloud-init", "iproute2",
    "openssh-server", "sudo", "locales",
    # cloud-init recommends it (growpart); without it cc_growpart has no resizer
    "cloud-guest-utils",
)  # fmt: skip


@dataclass(frozen=True)
class Generation:
    """One guest generation: what build-guest.sh installs and how the guest's network is run."""

    name: str  # the boot names' and test ids' prefix
    suite: str
    cloud_init: str  # the cloud-init version the suite ships (major.minor)
    network: str  # build-guest.sh NETWORK: "ifupdown" or "netplan"
    packages: tuple[str, ...]


DEBIAN12 = Generation(
    "debian12", "bookworm", "22.4", "ifupdown",
    BASE_PACKAGES + (
        # ifupdown brings bonds and VLANs up only with ifenslave and vlan (else networking.service
        # fails and cloud-init still reports success); config-2 routes need `route` (net-tools)
        "isc-dhcp-client", "ifupdown", "net-tools", "ifenslave", "vlan",
        # lets ifupdown's dns-nameservers/dns-search reach /etc/resolv.conf
        "resolvconf",
    ),
)  # fmt: skip
DEBIAN13 = Generation(
    "debian13", "trixie", "25.1", "netplan",
    # As Debian's cloud images: no ifupdown (with it cloud-init 25.1 picks the eni renderer, and
    # a seed without network config hangs networking.service 5 min on DHCPv6, cloud-init#5380).
    # systemd-networkd is part of trixie's systemd package.
    BASE_PACKAGES + ("netplan.io", "systemd-resolved"),
)  # fmt: skip
GENERATIONS = {generation.name: generation for generation in (DEBIAN12, DEBIAN13)}


@dataclass(frozen=True)
class GuestImage:
    """A built guest: direct-boot kernel and initrd, and a read-only raw ext4 root."""

    directory: Path
    kernel: Path
    initrd: Path
    root: Path

    @classmethod
    def at(cls, directory: Path) -> GuestImage:
        return cls(directory, directory / "vmlinuz", directory / "initrd.img", directory / "root.raw")

    def exists(self) -> bool:
        return all(p.is_file() for p in (self.kernel, self.initrd, self.root))


@dataclass(frozen=True)
class AptSource:
    """One Debian archive entry from the host's apt configuration."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def host_apt_sources(paths: tuple[Path, ...] = APT_DIRS) -> list[AptSource]:
    """Every enabled ``deb`` entry in one-line ``.list`` and deb822 ``.sources`` files."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
        elif path.is_file():
            files.append(path)
    sources: list[AptSource] = []
    for file in files:
        text = file.read_text()
        if file.suffix == ".sources":
            sources += _parse_deb822(text)
        else:
            sources += _parse_one_line(text)
    return sources


def _parse_one_line(text: str) -> list[AptSource]:
    found = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words and words[0] == "deb":
            words = [w for w in words[1:] if not w.startswith("[")]  # drop [options]
            if len(words) >= 3:
                found.append(AptSource(words[0], (words[1],), tuple(words[2:])))
    return found


def _parse_deb822(text: str) -> list[AptSource]:
    found = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        for uri in fields.get("uris", "").split():
            found.append(
                AptSource(
                    uri,
                    tuple(fields.get("suites", "").split()),
                    tuple(fields.get("components", "").split()),
                )
            )
    return found


def host_codename(os_release: Path = OS_RELEASE) -> str:
    """The host's Debian codename (``VERSION_CODENAME``), "" when it has none."""
    for line in os_release.read_text().splitlines() if os_release.is_file() else []:
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return value.strip().strip("\"'")
    return ""


def guest_sources(sources: list[AptSource], suite: str, host_suite: str = "") -> tuple[str, str]:
    """The debootstrap mirror and a deb822 sources file for a ``suite`` guest, from the host's entries.

    The archives the host uses for its own Debian release (``host_suite`` and its ``-updates``/
    ``-security`` suites; ``suite`` itself when the host lists it) serve ``suite`` and its
    ``-updates``/``-security`` suites, so a Debian 12 host builds a Debian 13 guest from the same
    mirror; a third-party repository on the host never reaches the guest.
    """
    tails = ("", "-updates", "-security")
    listed = any(suite in s.suites for s in sources)
    base = suite if listed or not host_suite else host_suite
    renamed = {base + tail: suite + tail for tail in tails}
    mirror = next((s.uri for s in sources if base in s.suites), None)
    if mirror is None:
        raise RuntimeError(f"no apt source for {suite} (or the host's {host_suite!r}) in the host's apt configuration")
    stanzas = []
    for source in sources:
        suites = [renamed[s] for s in source.suites if s in renamed]
        if suites:
            stanzas.append(
                f"Types: deb\nURIs: {source.uri}\nSuites: {' '.join(suites)}\n"
                f"Components: main\n"
                f"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            )
    return mirror, "\n".join(stanzas)


def recipe_hash(generation: Generation) -> str:
    """Hash of the generation record and every file that shapes the guest (the mirror does not)."""
    digest = hashlib.sha256(repr(generation).encode())
    for path in sorted(GUEST_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(GUEST_DIR).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    return Path(os.environ.get("CONFIGDRIVE_VM_CACHE", "/var/cache/configdrive-vm"))


def prune_stale(root: Path, keep: Path, max_age: float = STALE_AFTER) -> None:
    """Remove guests of other recipes not used for ``max_age`` seconds (each is ~0.9 GiB); every
    generation's current image is marked as used whenever a test session asks for it."""
    now = time.time()
    for entry in root.iterdir():
        if entry == keep or not entry.is_dir() or len(entry.name) != 16:
            continue
        if now - entry.stat().st_mtime > max_age:
            shutil.rmtree(entry, ignore_errors=True)
            for side in (root / f"{entry.name}.build.log", root / f"{entry.name}.sources"):
                side.unlink(missing_ok=True)


def ensure_guest(generation: Generation = DEBIAN12, log: Path | None = None) -> tuple[GuestImage, float | None]:
    """The cached guest of ``generation``'s current recipe, built first if missing.

    Returns the image and the build time in seconds (None when it was cached). A lock file
    keeps concurrent test sessions from building the same recipe twice.
    """
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    image = GuestImage.at(root / recipe_hash(generation))
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.exists():
            os.utime(image.directory)  # marks it as in use for prune_stale
            prune_stale(root, image.directory)
            return image, None
        mirror, sources = guest_sources(host_apt_sources(), generation.suite, host_codename())
        sources_file = root / f"{image.directory.name}.sources"
        sources_file.write_text(sources)
        log = log or root / f"{image.directory.name}.build.log"
        started = time.monotonic()
        with open(log, "w") as out:
            done = subprocess.run(
                [
                    "bash",
                    str(GUEST_DIR / "build-guest.sh"),
                    str(image.directory),
                    mirror,
                    str(sources_file),
                    generation.suite,
                    generation.network,
                    *generation.packages,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if done.returncode != 0 or not image.exists():
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"guest build failed (rc={done.returncode}), log {log}:\n{tail}")
        prune_stale(root, image.directory)
        return image, time.monotonic() - started


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or list(GENERATIONS):
        built, seconds = ensure_guest(GENERATIONS[name])
        print(name, built.directory, "cached" if seconds is None else f"built in {seconds:.0f} s", flush=True)
