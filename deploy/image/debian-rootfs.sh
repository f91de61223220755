#!/bin/bash
# Builds the Debian part of the ovsnet image (everything but ovsnet's own
# files) into a new directory, as root:
#
#   debian-rootfs.sh DIR MIRROR SECURITY_MIRROR
#
# debootstrap (variant minbase, suite bookworm, from MIRROR) with the
# packages of deploy/image/packages, then deploy/image/setup-rootfs.sh
# chrooted into it with apt's sources set to bookworm and bookworm-updates
# from MIRROR and bookworm-security from SECURITY_MIRROR (the same steps the
# Dockerfile runs on debian:12-slim), then what only a debootstrap tree has
# is removed: device nodes, the build host's resolv.conf and hostname.
#
# build.sh calls this on a cache miss and keeps DIR in its cache. Every
# process and mount of the build lives in a private PID and mount namespace
# (unshare), so none is left behind, whatever happens. DIR is removed on
# failure.
set -euo pipefail
umask 022
here=$(cd "$(dirname "$0")" && pwd)

die() {
	echo "debian-rootfs: $*" >&2
	exit 1
}
[ $# -eq 3 ] || die "usage: debian-rootfs.sh DIR MIRROR SECURITY_MIRROR"
dir=$1 mirror=$2 security=$3
[ "$(id -u)" -eq 0 ] || die "must run as root: debootstrap and chroot need it"
for c in debootstrap unshare chroot apt-config; do
	command -v "$c" >/dev/null || die "$c not found; install it with: apt-get install debootstrap util-linux coreutils apt"
done
[ ! -e "$dir" ] || die "$dir exists already; remove it or pick another directory"

mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$here/packages")
[ ${#pkgs[@]} -gt 0 ] || die "no package in $here/packages"
include=$(
	IFS=,
	echo "${pkgs[*]}"
)

# A tree is only ever deleted when nothing is mounted below it (the
# namespaces make that the normal case; this guards the rest).
remove_tree() {
	if awk -v d="$1" '$5 == d || index($5, d "/") == 1 {found = 1} END {exit !found}' /proc/self/mountinfo; then
		echo "debian-rootfs: something is still mounted under $1; not removing it (unmount it, then rm -rf it)" >&2
		return 1
	fi
	rm -rf "$1"
}
cleanup() {
	local rc=$?
	if [ "$rc" -ne 0 ] && [ -e "$dir" ]; then
		echo "debian-rootfs: failed; removing $dir" >&2
		remove_tree "$dir" || true
	fi
}
trap cleanup EXIT

# 1. debootstrap. --kill-child: if unshare goes, so does everything in it.
echo "debian-rootfs: debootstrap bookworm from $mirror (${pkgs[*]})" >&2
if ! unshare --mount --pid --fork --kill-child \
	debootstrap --variant=minbase --include="$include" bookworm "$dir" "$mirror" >&2; then
	log=$dir/debootstrap/debootstrap.log
	[ ! -f "$log" ] || tail -n 20 "$log" >&2
	die "debootstrap of bookworm from $mirror failed (log above); check that the mirror is reachable and serves bookworm (set OVSNET_IMAGE_MIRROR)"
fi

# 2. The shared setup, with apt's sources of the image and, for the build
# only, this host's apt network settings (proxy, validity checks of a
# snapshot mirror) and name resolution.
rm -f "$dir/etc/apt/sources.list"
cat >"$dir/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
apt-config dump Acquire >"$dir/etc/apt/apt.conf.d/00ovsnet-build-host"
rm -f "$dir/etc/resolv.conf"
cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
setup=$dir/tmp/ovsnet-setup
mkdir -p "$setup"
cp "$here/setup-rootfs.sh" "$here/packages" "$setup/"
echo "debian-rootfs: setup-rootfs.sh in the tree (upgrade, portmap, slimming)" >&2
unshare --mount --pid --fork --kill-child --mount-proc="$dir/proc" \
	chroot "$dir" /bin/bash /tmp/ovsnet-setup/setup-rootfs.sh /tmp/ovsnet-setup/packages >&2 ||
	die "setup-rootfs.sh failed in $dir (output above)"

# 3. What the image must not carry from this host or from debootstrap. The
# runtime provides /dev, /etc/resolv.conf, /etc/hostname.
rm -rf "$setup" "$dir/etc/apt/apt.conf.d/00ovsnet-build-host" "$dir/etc/resolv.conf" "$dir/etc/hostname" \
	"$dir/debootstrap" "$dir/var/cache/apt/archives/partial"
find "$dir/dev" "$dir/proc" "$dir/sys" "$dir/tmp" "$dir/var/tmp" -mindepth 1 -delete
find "$dir/run" -mindepth 1 ! -type d -delete
# Nothing e2e-mkimage cannot pack (sockets, fifos, devices) may remain.
odd=$(find "$dir" -xdev ! -type f ! -type d ! -type l | head -n 5)
[ -z "$odd" ] || die "special files left in $dir, which an image cannot hold: $odd"
echo "debian-rootfs: done: $(du -sh "$dir" | cut -f1) in $dir" >&2
