#!/usr/bin/env bash
# Builds what the ovsnet e2e cluster runs, into a cache that survives runs:
#   $OVSNET_E2E_CACHE/k8s-$E2E_K8S_VERSION/bin   kube-apiserver, kube-controller-manager,
#                                                kube-scheduler, kubelet, kubectl
#   $OVSNET_E2E_CACHE/images                     pause.tar, busybox.tar (OCI archives)
# Usage: build.sh [all|k8s|images]   (default: all)
# Each part is rebuilt only when its stamp no longer matches its inputs (the
# Kubernetes version; the image sources and the busybox binary).
#
# The Kubernetes components come from the Go module proxy: a build module in
# the cache requires k8s.io/kubernetes and pins every staging module
# (k8s.io/api, k8s.io/client-go, ...) to the matching v0.x release, which is
# what k8s.io/kubernetes' own go.mod resolves from its source tree.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

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

# write_build_module DIR: a go.mod in DIR that builds k8s.io/kubernetes' commands
# at E2E_K8S_VERSION.
write_build_module() {
	local src=$1 kmod staging_version m c
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
		for c in "${COMPONENTS[@]}"; do
			go mod edit -tool="k8s.io/kubernetes/cmd/$c"
		done
		go mod tidy
	)
}

build_k8s() {
	local dir=$OVSNET_E2E_CACHE/k8s-$E2E_K8S_VERSION c pkg minor ldflags pkgs=()
	if k8s_is_current "$dir"; then
		log "kubernetes $E2E_K8S_VERSION: cached in $dir/bin"
		return
	fi
	require_cmds go
	log "kubernetes $E2E_K8S_VERSION: building ${COMPONENTS[*]} (several minutes on a cold cache)"
	mkdir -p "$dir"
	rm -f "$dir/stamp"
	write_build_module "$dir/src"

	minor=$(echo "$E2E_K8S_VERSION" | cut -d. -f2)
	ldflags="-s -w"
	# Version reporting and the apiserver/kubelet skew checks read these.
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$E2E_K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
	done
	for c in "${COMPONENTS[@]}"; do
		pkgs+=("k8s.io/kubernetes/cmd/$c")
	done
	rm -rf "$dir/bin.new"
	mkdir -p "$dir/bin.new"
	(cd "$dir/src" && go build -trimpath -ldflags "$ldflags" -o "$dir/bin.new/" "${pkgs[@]}")
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
		echo "pause=$PAUSE_IMAGE busybox=$BUSYBOX_IMAGE"
		cat "$E2E_DIR"/e2e-pause/*.go "$E2E_DIR"/e2e-mkimage/*.go "$busybox" | sha256sum
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
		[ -f "$IMAGE_DIR/pause.tar" ] && [ -f "$IMAGE_DIR/busybox.tar" ]; then
		log "images: cached in $IMAGE_DIR"
		return
	fi
	require_cmds go
	log "images: building $PAUSE_IMAGE and $BUSYBOX_IMAGE"
	mkdir -p "$IMAGE_DIR"
	rm -f "$IMAGE_DIR/stamp"
	work=$(mktemp -d)
	# shellcheck disable=SC2064 # expand now: work is local
	trap "rm -rf '$work'" EXIT

	(cd "$E2E_REPO" && go build -buildvcs=false -trimpath -ldflags '-s -w' -o "$work/tools/" ./e2e/cluster/e2e-pause ./e2e/cluster/e2e-mkimage)

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

	echo "$stamp" >"$IMAGE_DIR/stamp"
	log "images: built into $IMAGE_DIR"
}

mkdir -p "$OVSNET_E2E_CACHE"
# One build at a time per cache; a second caller waits, then finds it current.
exec 9>"$OVSNET_E2E_CACHE/build.lock"
flock 9

case ${1:-all} in
all)
	build_k8s
	build_images
	;;
k8s)
	build_k8s
	;;
images)
	build_images
	;;
*)
	die "usage: $0 [all|k8s|images]"
	;;
esac
