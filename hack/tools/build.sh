#!/usr/bin/env bash
# Builds the lab's Kubernetes and etcd binaries and the image tool
# (herald-images) from the pinned wrapper modules into $HERALD_CACHE/bin
# (default ~/.cache/herald/bin), outside the source tree. A stamp of each
# wrapper's go.mod/go.sum makes a rebuild a no-op when nothing changed.
# Arguments name the tools to build (etcd, kube, images); none means all.
# Prints the bin directory on stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${HERALD_CACHE:-$HOME/.cache/herald}
bin=$cache/bin
mkdir -p "$bin"

# The image tool's stamp also covers its sources, which live in the module.
stamp_of() { { cat "$1/go.mod" "$1/go.sum" "$here/build.sh"; find "$1" -name '*.go' -print0 | sort -z | xargs -0r cat; } | sha256sum | cut -c1-16; }

# build DIR STAMPNAME BINARY... : go build each main package of DIR unless up to date.
build() {
	local dir=$1 name=$2 pkgs=("${@:3}") want have ldflags
	want=$(stamp_of "$dir")
	have=$(cat "$bin/.$name.stamp" 2>/dev/null || true)
	if [ "$want" = "$have" ]; then
		local missing=0
		for p in "${pkgs[@]}"; do [ -x "$bin/$(basename "$p")" ] || missing=1; done
		[ $missing = 0 ] && return 0
	fi
	ldflags="-s -w"
	if [ "$name" = kube ]; then
		local v
		v=$(cd "$dir" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
		local pkgv=k8s.io/component-base/version
		ldflags="$ldflags -X $pkgv.gitVersion=$v -X $pkgv.gitMajor=${v:1:1} -X $pkgv.gitMinor=$(echo "$v" | cut -d. -f2)"
		ldflags="$ldflags -X $pkgv.gitTreeState=clean -X $pkgv.buildDate=1970-01-01T00:00:00Z"
		ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$v"
	fi
	for p in "${pkgs[@]}"; do
		echo "building $(basename "$p")$([ "$name" = kube ] && echo " (first build of Kubernetes takes ~7 min on 2 cores)")" >&2
		(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/$(basename "$p")" "$p")
	done
	echo "$want" >"$bin/.$name.stamp"
}

wanted=("$@")
want() { [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $1 "* ]]; }

want etcd && build "$here/etcd" etcd github.com/heraldlb/herald/hack/tools/etcd
want kube && build "$here/kube" kube \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-proxy \
	k8s.io/kubernetes/cmd/kube-scheduler \
	k8s.io/kubernetes/cmd/kubectl
want images && build "$here/images" images github.com/heraldlb/herald/hack/tools/images/cmd/herald-images
echo "$bin"
