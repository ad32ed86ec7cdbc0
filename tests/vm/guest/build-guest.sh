#!/bin/bash
# Build a guest the booted-VM tests use: kernel, initrd and an ext4 root image.
#
# usage: build-guest.sh OUTDIR MIRROR SOURCES_FILE SUITE NETWORK PACKAGE...
#   OUTDIR        receives vmlinuz, initrd.img and root.raw (must not exist yet)
#   MIRROR        Debian archive URI for debootstrap, read from the host's apt configuration
#   SOURCES_FILE  deb822 sources for the guest's own apt (same origin as the host's)
#   SUITE         bookworm, trixie, ...
#   NETWORK       ifupdown (Debian 12: eni renderer, resolvconf) or netplan (Debian 13, as
#                 Debian's cloud images: netplan + systemd-networkd + systemd-resolved)
#   PACKAGE...    installed with apt-get --no-install-recommends (guest_image.GENERATIONS)
#
# Needs root (debootstrap, chroot). Makes the root file system with `mkfs.ext4 -d`, so no
# loop mounts; proc and sysfs are mounted in the chroot while packages install.
set -euo pipefail

outdir=$1 mirror=$2 sources=$3 suite=$4 network=$5
shift 5
packages=("$@")
here=$(cd "$(dirname "$0")" && pwd)
[[ $network == ifupdown || $network == netplan ]] || { echo "unknown NETWORK $network" >&2; exit 2; }
# Modules the initramfs needs so the seed CD-ROM exists before ds-identify runs (FACTS.md), and
# rtc_cmos, so the clock is set from the RTC before the root is mounted (a Debian 13 console showed
# no RTC line without it; cloud-init 25.1's status shows 1970 dates either way: it keeps stage
# times as uptime).
modules=(sr_mod cdrom isofs ata_piix ahci virtio_scsi virtio_blk virtio_net virtio_pci rtc_cmos)

[[ ! -e $outdir ]] || { echo "$outdir exists" >&2; exit 2; }
work=$(mktemp -d "${outdir}.work.XXXXXX")
root=$work/root

cleanup() {
    umount "$root/proc" 2>/dev/null || true
    umount "$root/sys" 2>/dev/null || true
    if findmnt -rn -o TARGET | grep -q "^$root"; then
        echo "still mounted under $root; leaving $work in place" >&2
    else
        rm -rf --one-file-system "$work"
    fi
}
trap cleanup EXIT

echo "== debootstrap $suite from $mirror"
debootstrap --variant=minbase "$suite" "$root" "$mirror"

rm -f "$root/etc/apt/sources.list"
install -m 0644 "$sources" "$root/etc/apt/sources.list.d/debian.sources"
# No daemons start inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"

echo "== apt-get install ${packages[*]}"
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 apt-get update -q
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
    apt-get install -y -q --no-install-recommends "${packages[@]}"
printf '%s\n' "${modules[@]}" >> "$root/etc/initramfs-tools/modules"
# cloud-init's cc_locale skips locale-gen when the locale is already the system's: do it once
# here instead of in every first boot under TCG.
echo 'en_US.UTF-8 UTF-8' > "$root/etc/locale.gen"
echo 'LANG=en_US.UTF-8' > "$root/etc/default/locale"
chroot "$root" locale-gen
chroot "$root" update-initramfs -u -k all

echo "== configure"
echo 'LABEL=vmroot / ext4 defaults,errors=remount-ro 0 1' > "$root/etc/fstab"
if [[ $network == ifupdown ]]; then
    cat > "$root/etc/network/interfaces" <<'ENI'
# cloud-init renders the NICs into interfaces.d/50-cloud-init
auto lo
iface lo inet loopback

source /etc/network/interfaces.d/*
ENI
else
    # cloud-init renders /etc/netplan/50-cloud-init.yaml and runs `netplan generate`;
    # systemd-networkd applies it, systemd-resolved takes its DNS (glibc asks resolved's stub).
    chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service
    ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
fi
# Each instance gets its own machine id and host keys (cloud-init regenerates them).
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
: > "$root/etc/hostname"
# debootstrap writes no /etc/hosts; this is what Debian's installer writes, less the hostname
# (cloud-init's manage_etc_hosts adds it when user-data asks).
cat > "$root/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
HOSTS
# Nothing that would compete with the tests for CPU under TCG.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
        man-db.timer dpkg-db-backup.timer; do
    chroot "$root" systemctl disable "$unit" 2>/dev/null || true
done
install -m 0755 "$here/configdrive-report" "$root/usr/local/sbin/configdrive-report"
install -m 0644 "$here/configdrive-report.service" \
    "$root/etc/systemd/system/configdrive-report.service"
chroot "$root" systemctl enable configdrive-report.service
rm -f "$root/usr/sbin/policy-rc.d"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/lib/cloud/*
umount "$root/proc" "$root/sys"

echo "== image"
mkdir "$work/out"
kernels=("$root"/boot/vmlinuz-*)
[[ ${#kernels[@]} -eq 1 ]] || { echo "expected one kernel: ${kernels[*]}" >&2; exit 1; }
cp "${kernels[0]}" "$work/out/vmlinuz"
cp "$root/boot/initrd.img-${kernels[0]##*/vmlinuz-}" "$work/out/initrd.img"
mkfs.ext4 -q -d "$root" -L vmroot "$work/out/root.raw" 4G
chmod 0444 "$work/out/root.raw" "$work/out/vmlinuz" "$work/out/initrd.img"
mv "$work/out" "$outdir"
echo "== done: $outdir"
