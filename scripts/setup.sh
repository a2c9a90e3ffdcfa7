#!/usr/bin/env bash
# Installs what building Flotilla needs on a Debian machine with Rust and Docker:
# clang and libclang-dev (RocksDB's bindgen), protobuf-compiler (protoc, which the
# etcd-client crate used by the etcd API tests needs to build; Flotilla's own protos are
# compiled with protox) and etcd-client (etcdctl 3.4, which the etcd API tests run).
# Idempotent; shared by the README's commands and .ci/run.
set -euo pipefail
need=()
for pkg in clang libclang-dev protobuf-compiler etcd-client; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
