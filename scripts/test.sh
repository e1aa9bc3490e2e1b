#!/usr/bin/env bash
# The test command: makes the images the tests run (NATS, and hookyard's own for the compose
# test) without needing a registry, then runs every test of the workspace and the benchmark
# suite's smoke mode. The compose stack test runs last and uncaptured, so its account of sent,
# delivered and lost events is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/images/build-host.sh
status=0
cargo test --workspace --locked --no-fail-fast -- --skip compose_stack || status=$?
# The benchmark suite's ~10 s smoke mode: every part of it runs and nothing accepted is lost.
cargo build --locked -p hookyard-bench -p hookyard-ingress -p hookyard-router -p hookyard-worker -p hookyard-egress || status=$?
target/debug/hookyard-bench --smoke --out target/bench/smoke.json || status=$?
cargo test --locked -p hookyard-tests --test compose -- --nocapture || status=$?
exit "$status"
