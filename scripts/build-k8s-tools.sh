#!/usr/bin/env bash
# Builds, once, the Go binaries the chart tests run: helm, a Kubernetes control
# plane (kube-apiserver, kube-controller-manager, kube-scheduler), etcd and kwok
# (a simulated node), and takes from the same Go modules the files the tests
# load: kwok's stages, KEDA's and the Prometheus Operator's CRDs. For a real
# node: kubelet, kube-proxy, kubectl, CoreDNS and a static pause binary (the
# sandbox's first process; needs gcc and a static libc). Each lands in
# ${XDG_CACHE_HOME:-$HOME/.cache}/consumer/<tool>-<version>/ and is reused from
# there: when everything is present this exits at once.
#
#   scripts/build-k8s-tools.sh            build what is missing
#   scripts/build-k8s-tools.sh --print    print "<tool> <path>" lines, build nothing
#
# Only the Go module proxy is needed. A second run waits for a first one (flock).
# To add a Kubernetes binary (kubelet, kube-proxy...), append it to K8S_BINARIES.
set -euo pipefail

HELM_VERSION=v3.22.0
K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.4
KWOK_VERSION=v0.8.0
KEDA_VERSION=v2.18.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0
COREDNS_VERSION=v1.12.1
PAUSE_VERSION=3.10
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/consumer"

# tool name -> "version"
declare -A VERSION=([helm]=$HELM_VERSION [etcd]=$ETCD_VERSION [kwok]=$KWOK_VERSION
  [kwok-stages]=$KWOK_VERSION [keda-crds]=$KEDA_VERSION
  [prometheus-operator-crds]=$PROMETHEUS_OPERATOR_VERSION [coredns]=$COREDNS_VERSION
  [pause]=$PAUSE_VERSION)
for b in "${K8S_BINARIES[@]}"; do VERSION[$b]=$K8S_VERSION; done
TOOLS=("${K8S_BINARIES[@]}" etcd kwok helm kwok-stages keda-crds prometheus-operator-crds
  coredns pause)

path_of() { echo "$CACHE/$1-${VERSION[$1]}/$1"; }

if [ "${1:-}" = "--print" ]; then
  for t in "${TOOLS[@]}"; do echo "$t $(path_of "$t")"; done
  exit 0
fi

missing() {
  local t
  for t in "${TOOLS[@]}"; do [ -x "$(path_of "$t")" ] || echo "$t"; done
}
[ -z "$(missing)" ] && exit 0

command -v go >/dev/null 2>&1 || { echo "build-k8s-tools: 'go' is needed to build: $(missing | xargs)" >&2; exit 1; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.k8s-tools.lock"
flock 9
[ -z "$(missing)" ] && exit 0  # another run built them while we waited

WORK=$(mktemp -d)
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"

# install <tool> <built-file-or-dir>: move into the cache only once complete.
install_tool() {
  local dir; dir=$(dirname "$(path_of "$1")")
  mkdir -p "$dir"
  mv "$2" "$dir/.$1.tmp" && mv "$dir/.$1.tmp" "$dir/$1"
}

timed() {
  local t=$1 start; shift
  start=$(date +%s)
  echo "build-k8s-tools: building $t ${VERSION[$t]} (once; several minutes)" >&2
  "$@"
  echo "build-k8s-tools: $t ${VERSION[$t]} built in $(( $(date +%s) - start ))s" >&2
}

# A module without replace directives installs straight from the proxy.
go_install() {  # <tool> <package@version>
  GOBIN="$WORK/bin-$1" go install "$2"
  install_tool "$1" "$WORK/bin-$1/$(basename "${2%@*}")"
}

# A module with replace directives builds inside a scratch module that
# requires it (its own replaces are then ignored, as for any dependency).
scratch_module() {  # <dir> [old=new@version...]
  local dir=$1; shift
  mkdir -p "$dir"
  if [ ! -f "$dir/go.mod" ]; then
    (cd "$dir" && go mod init consumer.local/tools >/dev/null 2>&1)
    local r; for r in "$@"; do (cd "$dir" && go mod edit -replace "$r"); done
  fi
}

module_dir() {  # <module@version>: its source, from the module cache
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# Files the tests load, joined into <tool>/<name> in file order.
from_module() {  # <tool> <module@version> <name> <path in module>...
  local t=$1 src name=$3 f; src=$(module_dir "$2"); shift 3
  mkdir -p "$WORK/$t"
  for f in "$@"; do cat "$src/$f"; echo "---"; done > "$WORK/$t/$name"
  install_tool "$t" "$WORK/$t"
}

build_etcd() {
  local dir="$WORK/etcd"
  scratch_module "$dir"
  (cd "$dir" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
     && go build -ldflags='-s -w' -o etcd go.etcd.io/etcd/server/v3)
  install_tool etcd "$dir/etcd"
}

# k8s.io/kubernetes maps its staging modules to ./staging/...; the scratch module
# maps each of them to the published v0.x.y of the same release instead.
build_k8s() {  # <binary>
  local dir="$CACHE/k8s-module-$K8S_VERSION" minor=${K8S_VERSION#v1.}
  local staging=v0.${minor}
  if [ ! -f "$dir/go.mod" ]; then
    local gomod replaces=()
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
      | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    while read -r m; do replaces+=("$m=$m@$staging"); done < <(
      sed -n '/^replace (/,/^)/s/^[[:space:]]*\(k8s\.io\/[^[:space:]]*\) => \.\/staging.*/\1/p' "$gomod")
    [ ${#replaces[@]} -gt 20 ] || { echo "build-k8s-tools: no staging replaces found in $gomod" >&2; exit 1; }
    rm -rf "$dir.tmp"
    scratch_module "$dir.tmp" "${replaces[@]}"
    mv "$dir.tmp" "$dir"
  fi
  local v=k8s.io/component-base/version
  (cd "$dir" && go get "k8s.io/kubernetes/cmd/$1@$K8S_VERSION" \
     && go build -o "$WORK/$1" \
          -ldflags="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=${minor%%.*} -X $v.gitTreeState=clean" \
          "k8s.io/kubernetes/cmd/$1")
  install_tool "$1" "$WORK/$1"
}

# The pod sandbox's first process: holds the pod's namespaces, reaps orphans,
# exits 0 on SIGTERM or SIGINT.
build_pause() {
  cat > "$WORK/pause.c" <<'C'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
static void quit(int sig) { (void)sig; _exit(0); }
int main(void) {
  struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  sigaction(SIGCHLD, &child, 0);
  signal(SIGTERM, quit);
  signal(SIGINT, quit);
  for (;;) pause();
}
C
  gcc -static -O2 -s -o "$WORK/pause" "$WORK/pause.c"
  install_tool pause "$WORK/pause"
}

for t in $(missing); do
  case $t in
    coredns) CGO_ENABLED=0 timed coredns go_install coredns "github.com/coredns/coredns@$COREDNS_VERSION" ;;
    pause) timed pause build_pause ;;
    helm) timed helm go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ;;
    kwok) timed kwok go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" ;;
    etcd) timed etcd build_etcd ;;
    kwok-stages)  # a node that turns Ready and heartbeats, pods that run
      from_module kwok-stages "sigs.k8s.io/kwok@$KWOK_VERSION" stages.yaml \
        kustomize/stage/node/fast/node-initialize.yaml \
        kustomize/stage/node/heartbeat/node-heartbeat.yaml \
        kustomize/stage/pod/fast/pod-ready.yaml \
        kustomize/stage/pod/fast/pod-complete.yaml \
        kustomize/stage/pod/fast/pod-delete.yaml ;;
    keda-crds)
      from_module keda-crds "github.com/kedacore/keda/v2@$KEDA_VERSION" crds.yaml \
        config/crd/bases/keda.sh_scaledobjects.yaml \
        config/crd/bases/keda.sh_triggerauthentications.yaml ;;
    prometheus-operator-crds)
      from_module prometheus-operator-crds \
        "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" crds.yaml \
        example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml \
        example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml ;;
    *) timed "$t" build_k8s "$t" ;;
  esac
done
