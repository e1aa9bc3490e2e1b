#!/usr/bin/env bash
# The test command: makes the images the tests run (NATS, and hookyard's own for the compose
# test) without needing a registry, then runs every test of the workspace. The compose stack
# test runs last and uncaptured, so its account of sent, delivered and lost events is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/images/build-host.sh
status=0
cargo test --workspace --locked --no-fail-fast -- --skip compose_stack || status=$?
cargo test --locked -p hookyard-tests --test compose -- --nocapture || status=$?
exit "$status"
