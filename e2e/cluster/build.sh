#!/usr/bin/env bash
# Builds what the ovsnet e2e cluster runs, into a cache that survives runs:
#   $OVSNET_E2E_CACHE/k8s-$E2E_K8S_VERSION/bin   kube-apiserver, kube-controller-manager,
#                                                kube-scheduler, kubelet, kubectl, kube-proxy
#   $OVSNET_E2E_CACHE/coredns-$E2E_COREDNS_VERSION/coredns
#                                                CoreDNS with the plugins the cluster's Corefile uses
#   $OVSNET_E2E_CACHE/images                     pause.tar, busybox.tar, nettool.tar,
#                                                coredns.tar (OCI archives)
#   $OVSNET_E2E_CACHE/conformance-$E2E_K8S_VERSION
#                                                e2e.test and ginkgo of Kubernetes' own
#                                                end-to-end suite, and the images its
#                                                sig-network tests run (make conformance)
# Usage: build.sh [all|k8s|images|coredns|conformance]   (default: all, which
# is everything but conformance)
# Each part is rebuilt only when its stamp no longer matches its inputs (the
# Kubernetes or CoreDNS version; the image sources and the busybox binary;
# the Debian packages of the conformance images).
#
# The Kubernetes components come from the Go module proxy: a build module in
# the cache requires k8s.io/kubernetes and pins every staging module
# (k8s.io/api, k8s.io/client-go, ...) to the matching v0.x release, which is
# what k8s.io/kubernetes' own go.mod resolves from its source tree. CoreDNS
# and e2e.test are built the same way, each in a build module of its own, so
# that none of this enters ovsnet's go.mod.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy)

export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

k8s_stamp() {
	echo "kubernetes $E2E_K8S_VERSION: ${COMPONENTS[*]}"
}

k8s_is_current() {
	local dir=$1 c
	[ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$(k8s_stamp)" ] || return 1
	for c in "${COMPONENTS[@]}"; do
		[ -x "$dir/bin/$c" ] || return 1
	done
}

# write_build_module DIR TOOL...: a go.mod in DIR that builds the TOOL packages
# (k8s.io/kubernetes' commands, ginkgo) against k8s.io/kubernetes at
# E2E_K8S_VERSION.
write_build_module() {
	local src=$1 kmod staging_version m c
	shift
	kmod=$(go mod download -json "k8s.io/kubernetes@$E2E_K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[ -f "$kmod" ] || die "could not download k8s.io/kubernetes@$E2E_K8S_VERSION from the Go module proxy; check GOPROXY and that the version exists"
	# k8s.io/kubernetes v1.X.Y ships its staging modules as v0.X.Y.
	staging_version=v0.${E2E_K8S_VERSION#v1.}

	rm -rf "$src"
	mkdir -p "$src"
	(
		cd "$src"
		go mod init ovsnet-e2e-kubernetes 2>/dev/null || die "go mod init failed in $src"
		go mod edit -go="$(awk '$1 == "go" {print $2; exit}' "$kmod")"
		# Same runtime defaults as upstream's release binaries.
		awk '$1 == "godebug" && $2 != "(" {print $2}' "$kmod" | while read -r m; do
			go mod edit -godebug="$m"
		done
		go mod edit -require="k8s.io/kubernetes@$E2E_K8S_VERSION"
		awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$kmod" | while read -r m; do
			go mod edit -replace="$m=$m@$staging_version"
		done
		for c in "$@"; do
			go mod edit -tool="$c"
		done
		go mod tidy
	)
}

# k8s_ldflags: the version stamps of upstream's release binaries.
k8s_ldflags() {
	local pkg minor ldflags="-s -w"
	minor=$(echo "$E2E_K8S_VERSION" | cut -d. -f2)
	# Version reporting and the apiserver/kubelet skew checks read these.
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$E2E_K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	echo "$ldflags"
}

build_k8s() {
	local dir=$OVSNET_E2E_CACHE/k8s-$E2E_K8S_VERSION c pkgs=()
	if k8s_is_current "$dir"; then
		log "kubernetes $E2E_K8S_VERSION: cached in $dir/bin"
		return
	fi
	require_cmds go
	log "kubernetes $E2E_K8S_VERSION: building ${COMPONENTS[*]} (several minutes on a cold cache)"
	mkdir -p "$dir"
	rm -f "$dir/stamp"
	for c in "${COMPONENTS[@]}"; do
		pkgs+=("k8s.io/kubernetes/cmd/$c")
	done
	write_build_module "$dir/src" "${pkgs[@]}"
	rm -rf "$dir/bin.new"
	mkdir -p "$dir/bin.new"
	(cd "$dir/src" && go build -trimpath -ldflags "$(k8s_ldflags)" -o "$dir/bin.new/" "${pkgs[@]}")
	for c in "${COMPONENTS[@]}"; do
		[ -x "$dir/bin.new/$c" ] || die "go build produced no $c in $dir/bin.new"
	done
	rm -rf "${dir:?}/bin"
	mv "$dir/bin.new" "$dir/bin"
	k8s_stamp >"$dir/stamp"
	log "kubernetes $E2E_K8S_VERSION: built into $dir/bin"
}

images_stamp() {
	local busybox=$1
	{
		echo "pause=$PAUSE_IMAGE busybox=$BUSYBOX_IMAGE nettool=$NETTOOL_IMAGE"
		cat "$E2E_DIR"/e2e-pause/*.go "$E2E_DIR"/e2e-mkimage/*.go "$E2E_DIR"/e2e-nettool/*.go \
			"$E2E_REPO/go.sum" "$busybox" | sha256sum
	}
}

build_images() {
	local busybox stamp work a
	require_cmds sha256sum
	busybox=$(command -v busybox || true)
	[ -n "$busybox" ] || die "busybox not found; install it with: apt-get install busybox-static"
	# The image has no libc: only a static busybox runs in it.
	if ldd "$busybox" >/dev/null 2>&1; then
		die "$busybox is dynamically linked; install Debian's busybox-static"
	fi
	stamp=$(images_stamp "$busybox")
	if [ -f "$IMAGE_DIR/stamp" ] && [ "$(cat "$IMAGE_DIR/stamp")" = "$stamp" ] &&
		[ -f "$IMAGE_DIR/pause.tar" ] && [ -f "$IMAGE_DIR/busybox.tar" ] && [ -f "$IMAGE_DIR/nettool.tar" ]; then
		log "images: cached in $IMAGE_DIR"
		return
	fi
	require_cmds go
	log "images: building $PAUSE_IMAGE, $BUSYBOX_IMAGE and $NETTOOL_IMAGE"
	mkdir -p "$IMAGE_DIR"
	rm -f "$IMAGE_DIR/stamp"
	work=$(mktemp -d)
	# shellcheck disable=SC2064 # expand now: work is local
	trap "rm -rf '$work'" EXIT

	build_mkimage "$work/tools"
	# ovsnet's own module: never rewrite its go.mod (-mod=mod is for the build modules).
	(cd "$E2E_REPO" && GOFLAGS=-mod=readonly go build -buildvcs=false -trimpath -ldflags '-s -w' -o "$work/tools/" ./e2e/cluster/e2e-pause ./e2e/cluster/e2e-nettool)

	mkdir -p "$work/pause-root"
	cp "$work/tools/e2e-pause" "$work/pause-root/pause"
	"$work/tools/e2e-mkimage" -name "$PAUSE_IMAGE" -rootfs "$work/pause-root" \
		-out "$IMAGE_DIR/pause.tar" -entrypoint /pause

	mkdir -p "$work/busybox-root/bin" "$work/busybox-root/etc" "$work/busybox-root/root" "$work/busybox-root/tmp"
	chmod 1777 "$work/busybox-root/tmp"
	cp "$busybox" "$work/busybox-root/bin/busybox"
	for a in $("$busybox" --list); do
		[ "$a" = busybox ] || ln -s busybox "$work/busybox-root/bin/$a"
	done
	echo 'root:x:0:0:root:/root:/bin/sh' >"$work/busybox-root/etc/passwd"
	echo 'root:x:0:' >"$work/busybox-root/etc/group"
	"$work/tools/e2e-mkimage" -name "$BUSYBOX_IMAGE" -rootfs "$work/busybox-root" \
		-out "$IMAGE_DIR/busybox.tar" sh

	mkdir -p "$work/nettool-root"
	cp "$work/tools/e2e-nettool" "$work/nettool-root/nettool"
	"$work/tools/e2e-mkimage" -name "$NETTOOL_IMAGE" -rootfs "$work/nettool-root" \
		-out "$IMAGE_DIR/nettool.tar" -entrypoint /nettool

	echo "$stamp" >"$IMAGE_DIR/stamp"
	log "images: built into $IMAGE_DIR"
}

# build_mkimage DIR: the image packer, into DIR.
build_mkimage() {
	(cd "$E2E_REPO" && GOFLAGS=-mod=readonly go build -buildvcs=false -trimpath -ldflags '-s -w' -o "$1/" ./e2e/cluster/e2e-mkimage)
}

coredns_stamp() {
	echo "coredns $E2E_COREDNS_VERSION image=$COREDNS_IMAGE $(cat "$E2E_DIR"/e2e-coredns/*.go "$E2E_DIR"/e2e-mkimage/*.go | sha256sum)"
}

# build_coredns: CoreDNS at E2E_COREDNS_VERSION with only the plugins the
# cluster uses (e2e-coredns/main.go), in a build module of its own, and its
# image. CoreDNS is the cluster's DNS; the conformance images carry the same
# binary as /coredns (upstream's agnhost image ships one for a DNS test).
build_coredns() {
	local dir=$OVSNET_E2E_CACHE/coredns-$E2E_COREDNS_VERSION cmod work
	if [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$(coredns_stamp)" ] &&
		[ -x "$dir/coredns" ] && [ -f "$IMAGE_DIR/coredns.tar" ]; then
		log "coredns $E2E_COREDNS_VERSION: cached in $dir"
		return
	fi
	require_cmds go
	log "coredns $E2E_COREDNS_VERSION: building (a few minutes on a cold cache)"
	mkdir -p "$dir" "$IMAGE_DIR"
	rm -f "$dir/stamp"
	cmod=$(go mod download -json "github.com/coredns/coredns@$E2E_COREDNS_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[ -f "$cmod" ] || die "could not download github.com/coredns/coredns@$E2E_COREDNS_VERSION from the Go module proxy; check GOPROXY, or set E2E_COREDNS_VERSION to a version it serves"
	rm -rf "$dir/src"
	mkdir -p "$dir/src"
	# Without its ignore tag, which keeps it out of ovsnet's own module.
	sed '/^\/\/go:build ignore$/d' "$E2E_DIR"/e2e-coredns/main.go >"$dir/src/main.go"
	(
		cd "$dir/src"
		go mod init ovsnet-e2e-coredns 2>/dev/null || die "go mod init failed in $dir/src"
		go mod edit -go="$(awk '$1 == "go" {print $2; exit}' "$cmod")"
		go mod edit -require="github.com/coredns/coredns@$E2E_COREDNS_VERSION"
		go mod tidy
		go build -trimpath -ldflags '-s -w' -o "$dir/coredns.new" .
	)
	mv "$dir/coredns.new" "$dir/coredns"

	work=$(mktemp -d)
	# shellcheck disable=SC2064 # expand now: work is local
	trap "rm -rf '$work'" EXIT
	build_mkimage "$work/tools"
	mkdir -p "$work/root/etc"
	cp "$dir/coredns" "$work/root/coredns"
	echo 'root:x:0:0:root:/:/coredns' >"$work/root/etc/passwd"
	echo 'root:x:0:' >"$work/root/etc/group"
	"$work/tools/e2e-mkimage" -name "$COREDNS_IMAGE" -rootfs "$work/root" \
		-out "$IMAGE_DIR/coredns.tar" -entrypoint /coredns
	coredns_stamp >"$dir/stamp"
	log "coredns $E2E_COREDNS_VERSION: built into $dir, image $IMAGE_DIR/coredns.tar"
}

# The Debian packages of the conformance test images: upstream's agnhost
# image (Alpine) has bash, curl, netcat-openbsd, iproute2 (ss) and
# bind-tools (dig); jessie-dnsutils has dig and nslookup. Busybox's own nc
# rejects flags the tests pass, hence a Debian root file system.
CONFORMANCE_DEBS=bash,curl,netcat-openbsd,iproute2,bind9-dnsutils,iputils-ping,procps

conformance_bin_stamp() {
	echo "kubernetes $E2E_K8S_VERSION: e2e.test ginkgo agnhost"
}

conformance_images_stamp() {
	{
		echo "agnhost and jessie-dnsutils: debs $CONFORMANCE_DEBS from $(debian_mirror); coredns $E2E_COREDNS_VERSION"
		echo "images: ${CONFORMANCE_IMAGES[*]}"
		cat "$E2E_DIR"/e2e-mkimage/*.go "$CONFORMANCE_DIR/bin/agnhost" "$COREDNS_BIN" | sha256sum
	}
}

# debian_mirror: where debootstrap gets the packages: E2E_DEBIAN_MIRROR, or
# the first Debian archive apt uses on this host.
debian_mirror() {
	if [ -n "${E2E_DEBIAN_MIRROR:-}" ]; then
		echo "$E2E_DEBIAN_MIRROR"
		return
	fi
	local m
	m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1 == "deb" && $0 ~ / bookworm / {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}')
	[ -n "$m" ] || m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '/^URIs:/ {u = $2} /^Suites:/ && / bookworm( |$)/ && u != "" && u !~ /security/ {print u; exit}')
	echo "${m:-http://deb.debian.org/debian}"
}

# build_conformance_bin: Kubernetes' e2e.test (test/e2e at E2E_K8S_VERSION),
# ginkgo (the version k8s.io/kubernetes requires) and agnhost, from one
# build module.
build_conformance_bin() {
	local dir=$CONFORMANCE_DIR f
	if [ -f "$dir/bin/stamp" ] && [ "$(cat "$dir/bin/stamp")" = "$(conformance_bin_stamp)" ] &&
		[ -x "$dir/bin/e2e.test" ] && [ -x "$dir/bin/ginkgo" ] && [ -x "$dir/bin/agnhost" ]; then
		log "conformance $E2E_K8S_VERSION: e2e.test, ginkgo and agnhost cached in $dir/bin"
		return
	fi
	require_cmds go
	log "conformance $E2E_K8S_VERSION: building e2e.test, ginkgo and agnhost (about 15 min on a cold cache)"
	mkdir -p "$dir"
	write_build_module "$dir/src" github.com/onsi/ginkgo/v2/ginkgo k8s.io/kubernetes/test/images/agnhost
	rm -rf "$dir/bin.new"
	mkdir -p "$dir/bin.new"
	(
		cd "$dir/src"
		go build -trimpath -ldflags '-s -w' -o "$dir/bin.new/" github.com/onsi/ginkgo/v2/ginkgo k8s.io/kubernetes/test/images/agnhost
		go test -c -trimpath -ldflags "$(k8s_ldflags)" -o "$dir/bin.new/e2e.test" k8s.io/kubernetes/test/e2e
	)
	for f in e2e.test ginkgo agnhost; do
		[ -x "$dir/bin.new/$f" ] || die "the build produced no $f in $dir/bin.new"
	done
	conformance_bin_stamp >"$dir/bin.new/stamp"
	rm -rf "${dir:?}/bin"
	mv "$dir/bin.new" "$dir/bin"
	log "conformance $E2E_K8S_VERSION: e2e.test, ginkgo and agnhost built into $dir/bin"
}

# build_conformance_images: the images the sig-network conformance tests
# run, under the names the suite asks for (test/utils/image/manifest.go):
# agnhost and jessie-dnsutils from one Debian root file system.
build_conformance_images() {
	local dir=$CONFORMANCE_DIR/images kdir work root mirror
	if [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$(conformance_images_stamp)" ] &&
		[ -s "$dir/agnhost.tar" ] && [ -s "$dir/jessie-dnsutils.tar" ]; then
		log "conformance images: cached in $dir"
		return
	fi
	require_cmds go debootstrap
	mkdir -p "$dir"
	rm -f "$dir/stamp"
	work=$(mktemp -d /var/tmp/ovsnet-e2e-rootfs.XXXXXX)
	# shellcheck disable=SC2064 # expand now: work is local
	trap "rm -rf '$work'" EXIT
	build_mkimage "$work/tools"
	root=$work/root
	mirror=$(debian_mirror)
	log "conformance images: debootstrap of Debian bookworm with $CONFORMANCE_DEBS from $mirror"
	debootstrap --variant=minbase --include="$CONFORMANCE_DEBS" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
		tail -n 20 "$work/debootstrap.log" >&2
		die "debootstrap from $mirror failed (log above); set E2E_DEBIAN_MIRROR to a reachable Debian mirror"
	}
	# Only files, directories and symlinks go into an image; the runtime
	# mounts /dev, /proc and /sys. Package caches and docs are dead weight.
	find "$root/dev" -mindepth 1 -delete
	rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
		"$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/* "$root"/var/log/*
	find "$root" ! -type f ! -type d ! -type l -delete
	# What upstream's agnhost image adds to its base.
	kdir=$(cd "$CONFORMANCE_DIR/src" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
	install -m 0755 "$CONFORMANCE_DIR/bin/agnhost" "$root/agnhost"
	ln -s agnhost "$root/agnhost-2"
	install -m 0644 "$kdir/test/images/agnhost/porter/localhost.crt" "$kdir/test/images/agnhost/porter/localhost.key" "$root/"
	install -m 0755 "$COREDNS_BIN" "$root/coredns"
	mkdir -p "$root/uploads"
	echo 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' >>"$root/etc/passwd"
	echo 'user-defined-in-image:x:1000:' >>"$root/etc/group"
	echo 'group-defined-in-image:x:50000:user-defined-in-image' >>"$root/etc/group"
	"$work/tools/e2e-mkimage" -name "$AGNHOST_IMAGE" -rootfs "$root" \
		-out "$dir/agnhost.tar" -entrypoint /agnhost pause
	"$work/tools/e2e-mkimage" -name "$JESSIE_DNSUTILS_IMAGE" -rootfs "$root" \
		-out "$dir/jessie-dnsutils.tar" bash
	conformance_images_stamp >"$dir/stamp"
	log "conformance images: built into $dir"
}

mkdir -p "$OVSNET_E2E_CACHE"
# One build at a time per cache; a second caller waits, then finds it current.
exec 9>"$OVSNET_E2E_CACHE/build.lock"
flock 9

case ${1:-all} in
all)
	build_k8s
	build_images
	build_coredns
	;;
k8s)
	build_k8s
	;;
images)
	build_images
	;;
coredns)
	build_coredns
	;;
conformance)
	build_coredns
	build_conformance_bin
	build_conformance_images
	;;
*)
	die "usage: $0 [all|k8s|images|coredns|conformance]"
	;;
esac
