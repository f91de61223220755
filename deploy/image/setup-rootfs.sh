#!/bin/bash
# Runs inside the ovsnet image's Debian root file system, as root: from
# build.sh (chrooted into the debootstrap tree) and from the Dockerfile (a
# RUN step on debian:12-slim), so both ways of building give the same files.
#
#   setup-rootfs.sh PACKAGES_FILE
#
# 1. Later dpkg runs (an operator's apt-get install in a debug session) skip
#    documentation, man pages and translations, as Debian's slim images do.
# 2. The packages of PACKAGES_FILE are installed and everything is upgraded
#    from the sources in /etc/apt (security updates included).
# 3. The reference CNI plugin portmap is taken out of Debian's
#    containernetworking-plugins package, without installing the package
#    (whose other plugins, and its iptables dependency, the image does not
#    need), to /usr/local/share/ovsnet/cni/portmap; the install-cni init
#    container copies it to the host's /opt/cni/bin.
# 4. Documentation (copyright files stay), man pages, translations, apt's
#    package lists and caches, and logs of the build go.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

die() {
	echo "setup-rootfs: $*" >&2
	exit 1
}
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
	die "usage: setup-rootfs.sh PACKAGES_FILE"
fi
mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$1")
[ ${#pkgs[@]} -gt 0 ] || die "no package in $1"

# Package scripts must start no service in the build.
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	own_policy=1
fi
work=$(mktemp -d)
cleanup() {
	rm -rf "$work"
	if [ -n "$own_policy" ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

cat >/etc/dpkg/dpkg.cfg.d/ovsnet-slim <<'CFG'
# ovsnet image: no documentation, man pages or translations (copyright
# files stay).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG

apt-get update -q || die "apt-get update failed: check the sources in /etc/apt and that the mirror is reachable"
apt-get install -y -q --no-install-recommends "${pkgs[@]}" || die "apt-get install ${pkgs[*]} failed"
apt-get upgrade -y -q --no-install-recommends || die "apt-get upgrade failed"

# portmap: only the binary, its copyright file and the package version.
chown _apt "$work" 2>/dev/null || true
(cd "$work" && apt-get download -q containernetworking-plugins) ||
	die "apt-get download containernetworking-plugins failed: the package is in Debian bookworm main"
deb=$(echo "$work"/containernetworking-plugins_*.deb)
[ -f "$deb" ] || die "apt-get download left no containernetworking-plugins package in $work"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" ./usr/lib/cni/portmap ./usr/share/doc/containernetworking-plugins/copyright ||
	die "$deb has no usr/lib/cni/portmap"
install -D -m 0755 "$work/usr/lib/cni/portmap" /usr/local/share/ovsnet/cni/portmap
install -D -m 0644 "$work/usr/share/doc/containernetworking-plugins/copyright" /usr/share/doc/containernetworking-plugins/copyright
dpkg-deb -f "$deb" Version >/usr/local/share/ovsnet/cni/portmap.version
chmod 0644 /usr/local/share/ovsnet/cni/portmap.version

apt-get clean
find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# ldconfig's aux-cache records inodes and times: the one file that made two
# builds from the same mirror state differ. ldconfig rebuilds it.
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/lintian/* \
	/var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old \
	/var/cache/ldconfig/aux-cache
# Logs of the build itself, not of the image's processes.
find /var/log -type f -delete
