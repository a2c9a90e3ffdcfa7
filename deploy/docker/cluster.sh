#!/usr/bin/env bash
# A five-machine Flotilla cluster on one Docker host: three servers and two agents, each a
# container on a private network (compose.yaml beside this script).
#
#   deploy/docker/cluster.sh up       build the binaries and the image, start the cluster,
#                                     write the host's kubeconfig, wait for both nodes
#   deploy/docker/cluster.sh down     stop it and delete its containers, volumes and network
#   deploy/docker/cluster.sh image    only build the image
#   deploy/docker/cluster.sh compose ARGS...   docker-compose with this cluster's settings
#
# Settings (environment):
#   FLOTILLA_BIN_DIR   directory holding flotilla and flotilla-agent (default: build them
#                      with `cargo build --release -p flotilla-examples` and use target/release)
#   FLOTILLA_PROJECT   compose project name (default flotilla), so several clusters can coexist
#   FLOTILLA_NET       first three octets of the network's /24 (default 10.213.0)
#   FLOTILLA_IMAGE     image tag (default flotilla/cluster:local)
#   FLOTILLA_STATE     where the kubeconfig and tokens are written (default
#                      ${XDG_STATE_HOME:-~/.local/state}/flotilla-docker/$FLOTILLA_PROJECT)
#   FLOTILLA_TIMEOUT   seconds to wait for each step (default 120)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export FLOTILLA_PROJECT="${FLOTILLA_PROJECT:-flotilla}"
export FLOTILLA_NET="${FLOTILLA_NET:-10.213.0}"
export FLOTILLA_IMAGE="${FLOTILLA_IMAGE:-flotilla/cluster:local}"
state="${FLOTILLA_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/flotilla-docker/$FLOTILLA_PROJECT}"
timeout="${FLOTILLA_TIMEOUT:-120}"

say() { echo "cluster.sh: $*" >&2; }
die() { say "$*"; exit 1; }

compose() { docker-compose -p "$FLOTILLA_PROJECT" -f "$here/compose.yaml" "$@"; }

# Runs "$@" until it succeeds, for at most $timeout seconds; prints what it printed last.
retry() {
  local what="$1"; shift
  local deadline=$((SECONDS + timeout)) out
  until out="$("$@" 2>&1)"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "gave up after ${timeout}s waiting for $what; last output:"
      echo "$out" >&2
      return 1
    fi
    sleep 1
  done
  printf '%s\n' "$out"
}

# Stages rootfs/ from the binaries and their shared libraries, then builds the image.
image() {
  local bins="${FLOTILLA_BIN_DIR:-}"
  if [ -z "$bins" ]; then
    (cd "$repo" && cargo build --release -p flotilla-examples)
    bins="${CARGO_TARGET_DIR:-$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
      sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}/release"
  fi
  for b in flotilla flotilla-agent; do
    [ -x "$bins/$b" ] || die "$bins/$b is missing (set FLOTILLA_BIN_DIR or unset it to build)"
  done
  [ -x /bin/busybox ] || die "/bin/busybox is missing: install Debian's busybox-static (scripts/setup.sh does)"
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/data"
  chmod 1777 "$ctx/rootfs/tmp"
  for b in flotilla flotilla-agent; do
    # Debug information is not needed in the image (and is most of a debug build's size).
    objcopy --strip-debug "$bins/$b" "$ctx/rootfs/bin/$b"
  done
  cp /bin/busybox "$ctx/rootfs/bin/busybox"
  for cmd in $(/bin/busybox --list); do
    [ -e "$ctx/rootfs/bin/$cmd" ] || ln -s busybox "$ctx/rootfs/bin/$cmd"
  done
  # The shared libraries (and the dynamic loader) the binaries link, at their host paths.
  ldd "$bins/flotilla" "$bins/flotilla-agent" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 ~ /^\(/ {print $1}' |
    sort -u | while read -r lib; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done
  cp "$here/Dockerfile" "$ctx/Dockerfile"
  docker build -q -t "$FLOTILLA_IMAGE" "$ctx" >/dev/null
  say "built image $FLOTILLA_IMAGE"
}

# `flotilla ARGS` inside a container.
in_ctr() { local c="$1"; shift; compose exec -T "$c" /bin/flotilla "$@"; }

up() {
  image
  mkdir -p "$state"
  chmod 700 "$state"
  compose up -d server-1
  say "waiting for server-1 to create the cluster"
  local server_token
  server_token="$(retry "server-1's join token" in_ctr server-1 token server --data-dir /data | tail -n1)"
  retry "server-1's API" in_ctr server-1 status --data-dir /data >/dev/null
  export FLOTILLA_SERVER_TOKEN="$server_token"
  compose up -d server-2 server-3
  say "waiting for three voters"
  retry "three voters" sh -c "docker-compose -p '$FLOTILLA_PROJECT' -f '$here/compose.yaml' exec -T server-1 \
    /bin/flotilla member list --data-dir /data | grep -c voter | grep -qx 3" >/dev/null
  local created agent_token ca_hash
  created="$(retry "a bootstrap token" in_ctr server-1 token create --data-dir /data --ttl 1h \
    --description "deploy/docker/cluster.sh")"
  agent_token="$(printf '%s\n' "$created" | sed -n 's/^ *token: *//p')"
  ca_hash="$(printf '%s\n' "$created" | sed -n 's/^ *ca-hash: *//p')"
  [ -n "$agent_token" ] && [ -n "$ca_hash" ] || die "unexpected output of token create: $created"
  export FLOTILLA_AGENT_TOKEN="$agent_token" FLOTILLA_CA_HASH="$ca_hash"
  compose up -d agent-1 agent-2
  # The admin kubeconfig, pointed at server-1 from the host.
  in_ctr server-1 kubeconfig --data-dir /data |
    sed "s#server: https://[^ ]*#server: https://$FLOTILLA_NET.11:6443#" >"$state/kubeconfig"
  chmod 600 "$state/kubeconfig"
  printf '%s\n' "$server_token" >"$state/server-token"
  chmod 600 "$state/server-token"
  say "waiting for agent-1 and agent-2 to be Ready"
  retry "two Ready nodes" sh -c "kubectl --kubeconfig '$state/kubeconfig' get nodes --no-headers |
    grep -c ' Ready ' | grep -qx 2"
  say "cluster up: servers $FLOTILLA_NET.11-13, agents $FLOTILLA_NET.21-22"
  echo "export KUBECONFIG=$state/kubeconfig"
}

down() {
  compose down -v --remove-orphans
  rm -rf "$state"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  image) image ;;
  compose) shift; compose "$@" ;;
  *) sed -n '2,22p' "$0" >&2; exit 2 ;;
esac
