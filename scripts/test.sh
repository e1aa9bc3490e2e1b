#!/usr/bin/env bash
# The test command: makes the images the tests run (NATS, and hookyard's own for the compose
# test) without needing a registry, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/images/build-host.sh
cargo test --workspace --locked --no-fail-fast "$@"
