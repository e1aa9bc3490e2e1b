#!/usr/bin/env bash
# Builds the images docker-compose.yml runs — hookyard:<version> and hookyard-nats:<version> —
# from binaries compiled on this host, for machines whose Docker cannot pull base images.
# The result has the layout of deploy/Dockerfile's targets: binaries in /usr/local/bin, a
# non-root user, a CA bundle, and the static health probe in the NATS image.
#
# The runtime base is made locally: the host's glibc libraries the binaries link against, the
# CA bundle, /etc/passwd and /tmp, in a `scratch` image (a few MB, built in about a second).
#
#   PROFILE=release bash deploy/images/build-host.sh   # optimised binaries (default: dev)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
profile=${PROFILE:-dev}
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# HOOKYARD_VERSION overrides the tag, so several trees on one machine keep their own images.
version=${HOOKYARD_VERSION:-$version}
nats_version=$(tr -d '[:space:]' < deploy/nats/VERSION)
bins=(hookyard hookyard-ingress hookyard-router hookyard-worker hookyard-egress hookyard-token hookyard-demo)

bash deploy/nats/build-local-image.sh

cargo build --locked --profile "$profile" --bins
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --locked --release -p hookyard-probe --target x86_64-unknown-linux-gnu

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/root/usr/local/bin" "$ctx/root/etc/ssl/certs" "$ctx/root/tmp"
chmod 1777 "$ctx/root/tmp"
for b in "${bins[@]}"; do
  # Debug info is most of a dev binary's size and no use in a container.
  objcopy --strip-debug "target/$dir/$b" "$ctx/root/usr/local/bin/$b"
done
# The shared libraries the binaries need, at the paths the dynamic loader expects.
for lib in $(ldd "${bins[@]/#/target/$dir/}" | awk '/=> \//{print $3} /^[ \t]*\/lib/{print $1}' | sort -u); do
  mkdir -p "$ctx/root$(dirname "$lib")"
  cp -L "$lib" "$ctx/root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$ctx/root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nhookyard:x:10001:10001:hookyard:/nonexistent:/sbin/nologin\n' > "$ctx/root/etc/passwd"
printf 'root:x:0:\nhookyard:x:10001:\n' > "$ctx/root/etc/group"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PATH=/usr/local/bin
USER 10001:10001
EXPOSE 8080 9000 50051 50052 50053 50054
CMD ["hookyard", "--help"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build --quiet -t "hookyard:$version" "$ctx" >/dev/null
echo "built hookyard:$version from host binaries ($profile)"

probe=$(mktemp -d)
cp target/x86_64-unknown-linux-gnu/release/hookyard-probe "$probe/hookyard-probe"
printf 'FROM nats:%s\nCOPY hookyard-probe /hookyard-probe\n' "$nats_version" > "$probe/Dockerfile"
DOCKER_BUILDKIT=0 docker build --quiet -t "hookyard-nats:$version" "$probe" >/dev/null
rm -rf "$probe"
echo "built hookyard-nats:$version (nats:$nats_version with the health probe)"
