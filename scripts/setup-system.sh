#!/usr/bin/env bash
# Installs the system parts the tests and `make run` need, only when missing:
# a JDK (the local Kafka broker), Maven (resolves the broker jars), the
# PostgreSQL server (the integration tests' database), Prometheus with
# promtool (the alert rules' tests and the dashboard's live test), a Docker
# engine with debootstrap (the container image tests run their own engine and
# base image), and what a real single-node cluster needs besides the Go
# binaries: containerd, runc, the CNI plugins, iptables, conntrack, and gcc
# with a static libc for the pause binary; openssl (certificates for the
# secured broker and the chart tests' API server keys); tmux (a real terminal
# for `consumer top`'s test). Idempotent.
set -euo pipefail

missing=()
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # the chart tests' API server keys
command -v tmux >/dev/null 2>&1 || missing+=(tmux)  # `consumer top`'s terminal test
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
ls /usr/lib/*/libc.a >/dev/null 2>&1 || missing+=(libc6-dev)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]} (install them, or run 'make setup' as root)" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# apt is shared with other users of the machine: wait for its lock rather than fail.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package starts a cluster of its own; the tests run their own.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h | while read -r ver name _; do
    pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
  done
fi
# Likewise Prometheus: where a service manager started its daemon, stop it;
# the tests run their own on a free port.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi
