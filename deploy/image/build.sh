#!/bin/bash
# make image: builds the ovsnet image as an OCI archive without a container
# engine or a registry, as root:
#
#   deploy/image/build.sh
#
# Two layers:
#   1. Debian bookworm (minbase) with the packages of deploy/image/packages,
#      security updates and the reference CNI plugin portmap, made by
#      debian-rootfs.sh (debootstrap; minutes) and cached under
#      $OVSNET_IMAGE_CACHE, keyed by the package list, the Debian mirrors,
#      the architecture and the two scripts that make it;
#   2. ovsnet, built from this tree: ovsnet-agent, ovsnetctl and the CNI
#      plugin ovsnet in /usr/local/bin, start-ovs.sh in /usr/local/share/ovsnet.
# e2e-mkimage packs them (gzip; an unchanged layer is taken compressed from
# the cache), so a rebuild after a Go change takes seconds and changes only
# the second layer. Equal inputs give a byte-identical archive.
#
# Output, in $OVSNET_IMAGE_OUT (default bin/image of the repository):
#   ovsnet.tar               the archive: docker.io/library/ovsnet:latest and
#                            docker.io/library/ovsnet:$VERSION, one image
#   ovsnet-image.env         the same facts for scripts (sourceable)
#   ovsnet-image.packages    the Debian packages and versions in the image
#
# Environment:
#   OVSNET_IMAGE_CACHE            cache directory (/var/cache/ovsnet-image)
#   OVSNET_IMAGE_OUT              output directory (bin/image)
#   OVSNET_IMAGE_REPO             image name without tag (docker.io/library/ovsnet:
#                                 what a pod's "image: ovsnet:latest" means)
#   OVSNET_IMAGE_VERSION          second tag (git describe --tags --always --dirty)
#   OVSNET_IMAGE_MIRROR           Debian mirror (the one apt uses for bookworm)
#   OVSNET_IMAGE_SECURITY_MIRROR  Debian security mirror (apt's for bookworm-security)
#   OVSNET_IMAGE_REFRESH=1        rebuild the Debian layer even when cached (new
#                                 security updates)
#   GO                            the go command (go)
set -euo pipefail
umask 022
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

CACHE=${OVSNET_IMAGE_CACHE:-/var/cache/ovsnet-image}
OUT=${OVSNET_IMAGE_OUT:-$repo/bin/image}
IMAGE_REPO=${OVSNET_IMAGE_REPO:-docker.io/library/ovsnet}
GO=${GO:-go}
# The image's PATH, as in Debian's own images: the DaemonSet runs
# ovsnet-agent by name.
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

t0=$(date +%s%N)
log() {
	printf '[%6.1fs] image: %s\n' "$((($(date +%s%N) - t0) / 1000000))e-3" "$*" >&2
}
die() {
	echo "image: error: $*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot build the Debian layer): sudo make image"
for c in flock sha256sum tar dpkg dpkg-query apt-get; do
	command -v "$c" >/dev/null || die "$c not found: build.sh runs on Debian (apt-get install util-linux coreutils tar dpkg apt)"
done
command -v "$GO" >/dev/null || die "$GO not found: install Go (the version in go.mod) or set GO=/path/to/go"

version=${OVSNET_IMAGE_VERSION:-}
if [ -z "$version" ]; then
	version=$(git -C "$repo" describe --tags --always --dirty 2>/dev/null) ||
		die "cannot name the version with git describe in $repo; set OVSNET_IMAGE_VERSION"
fi
[[ $version =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] ||
	die "version \"$version\" is not a valid image tag (letters, digits, _ . -; at most 128); set OVSNET_IMAGE_VERSION"

# apt_uri SUITE: the URI apt fetches SUITE's main packages from.
apt_uri() {
	# shellcheck disable=SC2016 # $(...) is apt's format syntax
	apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' 2>/dev/null |
		awk -v s="$1" '$2 == s && $3 == "main" {sub("/$", "", $1); print $1; exit}'
}
mirror=${OVSNET_IMAGE_MIRROR:-$(apt_uri bookworm)}
[ -n "$mirror" ] || die "apt has no source for bookworm main; set OVSNET_IMAGE_MIRROR to a Debian mirror (the URI of a sources.list line)"
security=${OVSNET_IMAGE_SECURITY_MIRROR:-$(apt_uri bookworm-security)}
[ -n "$security" ] || die "apt has no source for bookworm-security main; set OVSNET_IMAGE_SECURITY_MIRROR to a Debian security mirror"
arch=$(dpkg --print-architecture)

mkdir -p "$CACHE" "$OUT"
exec 9>"$CACHE/lock"
flock -n 9 || {
	log "waiting for another build using $CACHE"
	flock 9
}

work=$(mktemp -d "${TMPDIR:-/tmp}/ovsnet-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# not_mounted DIR: true when nothing is mounted at or below DIR.
not_mounted() {
	! awk -v d="$1" '$5 == d || index($5, d "/") == 1 {found = 1} END {exit !found}' /proc/self/mountinfo
}
remove_tree() {
	not_mounted "$1" || die "something is mounted under $1; unmount it, then remove it"
	rm -rf "$1"
}

# 1. The Debian layer, from the cache or built into it.
key=$({
	echo "suite=bookworm variant=minbase arch=$arch mirror=$mirror security=$security"
	cat "$here/packages" "$here/debian-rootfs.sh" "$here/setup-rootfs.sh"
} | sha256sum | cut -c1-16)
rootfs=$CACHE/debian-$key
if [ -d "$rootfs" ] && [ "${OVSNET_IMAGE_REFRESH:-0}" != 1 ]; then
	log "Debian layer: cached in $rootfs"
else
	command -v debootstrap >/dev/null || die "debootstrap not found; install it with: apt-get install debootstrap"
	log "Debian layer: building into $rootfs (debootstrap; a few minutes)"
	for old in "$CACHE"/*.building; do
		[ ! -e "$old" ] || remove_tree "$old"
	done
	"$here/debian-rootfs.sh" "$rootfs.building" "$mirror" "$security"
	[ ! -e "$rootfs" ] || remove_tree "$rootfs"
	rm -f "$rootfs.packages"
	mv "$rootfs.building" "$rootfs"
	log "Debian layer: built"
fi
if [ ! -f "$rootfs.packages" ]; then
	{
		echo "# Debian layer of the ovsnet image: bookworm minbase $arch from $mirror and $security"
		dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f '${Package} ${Version}\n'
		echo "portmap (containernetworking-plugins) $(cat "$rootfs/usr/local/share/ovsnet/cni/portmap.version")"
	} >"$rootfs.packages.tmp"
	mv "$rootfs.packages.tmp" "$rootfs.packages"
fi
# Only the current Debian layer stays.
for old in "$CACHE"/debian-*; do
	case $old in
	"$rootfs" | "$rootfs.packages") ;;
	*) remove_tree "$old" ;;
	esac
done

# 2. The ovsnet layer, with the Dockerfile's build flags. CGO off: the plugin
# runs on the host, whatever its libc. Stripped (-s -w): stack traces and
# profiles keep their symbols; only debuggers need a `make build` binary.
# The version is stamped by -X, not from VCS data.
log "ovsnet layer: go build ($version)"
layer=$work/ovsnet
mkdir -p "$layer/usr/local/bin" "$layer/usr/local/share/ovsnet"
(
	cd "$repo"
	export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false"
	"$GO" build -trimpath -ldflags "-s -w -X main.version=$version" -o "$layer/usr/local/bin/" \
		./cmd/ovsnet-agent ./cmd/ovsnetctl ./cmd/ovsnet
	"$GO" build -trimpath -o "$work/e2e-mkimage" ./e2e/cluster/e2e-mkimage
) || die "go build failed (output above)"
install -m 0755 "$here/start-ovs.sh" "$layer/usr/local/share/ovsnet/start-ovs.sh"

# 3. Pack.
log "packing $OUT/ovsnet.tar"
"$work/e2e-mkimage" -name "$IMAGE_REPO:latest" -name "$IMAGE_REPO:$version" \
	-rootfs "$rootfs" -rootfs "$layer" -keep-owners -gzip -layer-cache "$CACHE/layers" \
	-env "PATH=$IMAGE_PATH" -out "$OUT/ovsnet.tar" bash 2>"$work/mkimage.log" || {
	cat "$work/mkimage.log" >&2
	die "e2e-mkimage could not pack the image (output above)"
}
manifest=$(tar -xOf "$OUT/ovsnet.tar" index.json | sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p')
cp "$rootfs.packages" "$OUT/ovsnet-image.packages.tmp"
mv "$OUT/ovsnet-image.packages.tmp" "$OUT/ovsnet-image.packages"
cat >"$OUT/ovsnet-image.env.tmp" <<ENV
# Written by deploy/image/build.sh (make image).
OVSNET_IMAGE_ARCHIVE=$OUT/ovsnet.tar
OVSNET_IMAGE=$IMAGE_REPO:latest
OVSNET_IMAGE_VERSIONED=$IMAGE_REPO:$version
OVSNET_IMAGE_VERSION=$version
OVSNET_IMAGE_MANIFEST=$manifest
ENV
mv "$OUT/ovsnet-image.env.tmp" "$OUT/ovsnet-image.env"

archive_mb=$(du -m --apparent-size "$OUT/ovsnet.tar" | cut -f1)
unpacked_mb=$(du -scm "$rootfs" "$layer" | tail -n 1 | cut -f1)
log "done: $OUT/ovsnet.tar ($archive_mb MiB; $unpacked_mb MiB unpacked), $IMAGE_REPO:latest = $IMAGE_REPO:$version, manifest $manifest"
