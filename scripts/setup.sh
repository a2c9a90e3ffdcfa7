#!/usr/bin/env bash
# Installs what building Flotilla needs on a Debian machine with Rust and Docker:
# clang and libclang-dev (RocksDB's bindgen), protobuf-compiler (protoc, which the
# etcd-client crate used by the etcd API tests needs to build; Flotilla's own protos are
# compiled with protox), etcd-client (etcdctl 3.4, which the etcd API tests run) and
# busybox-static (the node agent's tests build their images FROM scratch around it, since
# no registry is reachable), libfaketime (the failure tests' clock-skew fault shifts members'
# wall clocks with it), and docker-compose when no compose tool is there (deploy/docker
# and its test; without recommends, so that it never brings a Docker engine of its own).
# Idempotent; shared by the README's commands and .ci/run.
set -euo pipefail
need=()
for pkg in clang libclang-dev protobuf-compiler etcd-client busybox-static libfaketime; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
compose=()
command -v docker-compose >/dev/null 2>&1 || compose=(docker-compose)
if [ "${#need[@]}" -gt 0 ] || [ "${#compose[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  if [ "${#need[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [ "${#compose[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${compose[@]}" >/dev/null
  fi
fi
