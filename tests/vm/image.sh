#!/usr/bin/env bash
# Builds, once, the Debian 12 machine the deploy test boots: a root made by debootstrap from the
# distribution's registry (the mirror this host's apt uses), with Debian's kernel, systemd,
# openssh, nginx (its default site enabled, as the package leaves it), tmux and git, and nothing of
# pocketdev. Cached in CACHE_DIR (outside the clone), so only the first run pays for it; a change
# of RECIPE below builds it again.
#
#   tests/vm/image.sh CACHE_DIR
#
# Leaves in CACHE_DIR: debian12.img (raw ext4, the guest's root), vmlinuz, initrd.img and the
# SSH key the test signs in with (id_ed25519).
set -euo pipefail

RECIPE=2
PACKAGES=systemd-sysv,udev,linux-image-amd64,openssh-server,nginx,tmux,passwd,git,curl,openssl,ca-certificates,iproute2,procps,kmod,hostname
cache=${1:?give the cache folder}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
if [ "$(cat "$cache/ready" 2>/dev/null)" = "$RECIPE" ]; then
    exit 0
fi
for tool in debootstrap mkfs.ext4 ssh-keygen; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing" >&2; exit 1; }
done

# The mirror this host's apt uses (deb822 sources or a sources.list).
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { echo "error: no Debian mirror in this host's apt sources" >&2; exit 1; }

rm -rf "$cache/root" "$cache/ready" "$cache/debian12.img"
echo "building the Debian 12 guest in $cache (once; about two minutes)" >&2
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$cache/root" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }

root=$cache/root
echo "pocketdev-test" >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 pocketdev-test\n' >"$root/etc/hosts"
printf '/dev/vda / ext4 defaults 0 1\n' >"$root/etc/fstab"
printf 'deb %s bookworm main\n' "$mirror" >"$root/etc/apt/sources.list"
# DHCP on the virtual network card, by systemd-networkd.
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=en*\n\n[Network]\nDHCP=yes\n' >"$root/etc/systemd/network/80-dhcp.network"
ln -sf /lib/systemd/system/systemd-networkd.service \
    "$root/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
# Root signs in with the test's key only.
rm -f "$cache/id_ed25519" "$cache/id_ed25519.pub"
ssh-keygen -q -t ed25519 -N '' -C pocketdev-test -f "$cache/id_ed25519"
install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$cache/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
# The kernel boots directly (no boot loader); Debian's initramfs mounts /run noexec, as on a VPS.
cp "$root"/boot/vmlinuz-* "$cache/vmlinuz"
cp "$root"/boot/initrd.img-* "$cache/initrd.img"
chmod 0644 "$cache/vmlinuz" "$cache/initrd.img"
rm -rf "$root"/var/cache/apt/archives/*.deb
mkfs.ext4 -q -L root -d "$root" "$cache/debian12.img" 4G >/dev/null
rm -rf "$root"
echo "$RECIPE" >"$cache/ready"
