#!/usr/bin/env bash
# The test command: makes the images the tests run (NATS, and hookyard's own for the compose
# test) without needing a registry, then runs every test of the workspace and the benchmark
# suite's smoke mode. The compose stack tests (one NATS, then the three-node cluster losing a
# node) run last and uncaptured, so their account of sent, delivered and lost events is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/images/build-host.sh
status=0
cargo test --workspace --locked --no-fail-fast -- --skip compose_stack || status=$?
# The benchmark suite's ~40 s smoke mode: every part of it runs (ingress, end to end on one
# NATS and on a three-node cluster, subprocess steps) and nothing accepted is lost.
cargo build --locked -p hookyard-bench -p hookyard-ingress -p hookyard-router -p hookyard-worker -p hookyard-egress || status=$?
target/debug/hookyard-bench --smoke --out target/bench/smoke.json || status=$?
# No backtrace on a phase's error: the error names the phase and what failed, and a backtrace of
# the test's own thread would push it out of the last lines a CI summary shows.
RUST_LIB_BACKTRACE=0 cargo test --locked -p hookyard-tests --test compose -- --nocapture || status=$?
exit "$status"
