#!/usr/bin/env bash
# Makes local stand-ins for the base images deploy/Dockerfile starts from, for machines whose
# Docker cannot pull images, so that `docker compose build` (and `up --build`) runs the
# user-facing Dockerfile unchanged:
#
#   debian:bookworm-slim    a `debootstrap --variant=minbase bookworm` tree, imported
#   rust:<RUST>-bookworm    that tree plus a C toolchain (for linking) and this host's Rust
#                           toolchain, laid out like the official image (/usr/local/cargo,
#                           /usr/local/rustup, cargo and rustc on PATH) and the host's CA bundle
#
# An image that already exists (pulled, or made before) is left alone. Needs root for
# debootstrap, and Debian's package mirror (the build steps reach it too, like a user's build).
#
#   bash deploy/images/base-standins.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
rust_version=$(sed -n 's/^ARG RUST_VERSION=//p' "$root/deploy/Dockerfile")
debian="debian:bookworm-slim"
rust="rust:${rust_version}-bookworm"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if docker image inspect "$debian" >/dev/null 2>&1; then
  echo "image $debian present"
else
  command -v debootstrap >/dev/null || apt-get install -y --no-install-recommends debootstrap >/dev/null
  debootstrap --variant=minbase bookworm "$work/bookworm" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }
  # Same trimming as the official slim image: no package lists or caches.
  rm -rf "$work/bookworm/var/lib/apt/lists/"* "$work/bookworm/var/cache/apt/"*.bin
  tar -C "$work/bookworm" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$debian" >/dev/null
  echo "made $debian from debootstrap --variant=minbase bookworm"
fi

if docker image inspect "$rust" >/dev/null 2>&1; then
  echo "image $rust present"
else
  sysroot=$(rustc --print sysroot)
  host_version=$(rustc --version | awk '{print $2}')
  case "$host_version" in
    "$rust_version"|"$rust_version".*) ;;
    *) echo "host rustc is $host_version, deploy/Dockerfile wants $rust_version" >&2; exit 1 ;;
  esac
  mkdir -p "$work/rust/toolchain"
  # The host's CA bundle: where the host reaches crates.io through a TLS-intercepting proxy it
  # trusts, the build inside the image must trust that proxy too.
  cp -L /etc/ssl/certs/ca-certificates.crt "$work/rust/host-ca.crt"
  # The toolchain without its offline documentation (most of its size).
  cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$work/rust/toolchain/" 2>/dev/null \
    || cp -a "$sysroot/bin" "$sysroot/lib" "$work/rust/toolchain/"
  cat >"$work/rust/Dockerfile" <<DOCKERFILE
FROM $debian
RUN apt-get update \\
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
 && rm -rf /var/lib/apt/lists/*
COPY host-ca.crt /etc/ssl/certs/ca-certificates.crt
COPY toolchain/ /usr/local/rustup/toolchains/host/
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/rustup/toolchains/host/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && cargo --version && rustc --version
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build --quiet -t "$rust" "$work/rust" >/dev/null
  echo "made $rust from $debian and the host's Rust $host_version"
fi
