#!/usr/bin/env bash
# The README's quickstart, run as a user would: `docker compose up --build` builds
# deploy/Dockerfile, starts the stack, and the quickstart webhook reaches the demo partner.
#
# On a machine that cannot pull images it first makes local stand-ins for the Dockerfile's base
# images (deploy/images/base-standins.sh) and the NATS image (deploy/nats/build-local-image.sh);
# where they can be pulled those scripts find them present and do nothing. The images are tagged
# `quickstart` so they never replace the ones the tests use, and are removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

export HOOKYARD_VERSION=${HOOKYARD_VERSION:-quickstart}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export HOOKYARD_INGRESS_PORT=${HOOKYARD_INGRESS_PORT:-$(free_port)}
export HOOKYARD_DEMO_PORT=${HOOKYARD_DEMO_PORT:-$(free_port)}
export HOOKYARD_CONSENT_PORT=${HOOKYARD_CONSENT_PORT:-$(free_port)}
project=hookyardquickstart$$
compose() { docker-compose -p "$project" "$@"; }

bash deploy/images/base-standins.sh
bash deploy/nats/build-local-image.sh

cleanup() {
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  docker image rm "hookyard:$HOOKYARD_VERSION" "hookyard-nats:$HOOKYARD_VERSION" >/dev/null 2>&1 || true
  docker image prune -f >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "quickstart: docker-compose up -d --build (deploy/Dockerfile)"
started=$(date +%s)
compose up -d --build
echo "quickstart: built and started in $(( $(date +%s) - started )) s"

ingress="http://127.0.0.1:$HOOKYARD_INGRESS_PORT"
demo="http://127.0.0.1:$HOOKYARD_DEMO_PORT"
wait_for() { # what, seconds, command...
  local what=$1 limit=$2; shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "quickstart: timed out after ${limit}s waiting for $what" >&2
      compose ps >&2; compose logs --tail 30 >&2
      return 1
    fi
    sleep 1
  done
}
wait_for "ingress to be ready" 180 curl -sf "$ingress/readyz"

echo "quickstart: sending the README's webhook"
answer=$(curl -s -w ' %{http_code}' -u shop:demo-shop-password \
  -H 'X-Shop-Topic: order.created' -H 'X-Shop-Delivery-Id: d-1' -H 'Content-Type: application/json' \
  -d '{"order":{"id":"o-1","customer":{"email":"a@shop.example"},"total":10,"currency":"EUR","lines":[{"sku":"A","quantity":1}]}}' \
  "$ingress/hooks/shop")
echo "quickstart: ingress answered $answer"
case "$answer" in *" 202") ;; *) echo "quickstart: expected 202" >&2; exit 1 ;; esac

delivered() { curl -sf "$demo/_demo/calls" | grep -q '"path":"/erp/v1/orders"'; }
wait_for "the partner call" 60 delivered
echo "quickstart: the demo partner received:"
curl -s "$demo/_demo/calls"; echo
echo "quickstart: ok"
