#!/usr/bin/env bash
# Start the external services the test suite needs (called by `./dev test` before pytest).
# Today: PostgreSQL for the audit-trail tests (scripts/pg.sh; idempotent). The tests find it
# again by running `scripts/pg.sh dsn`/`start`, or take GATEWAY_TEST_PG_DSN when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-chromium.sh  # headless Chromium + a CJK font for the browser tests (idempotent)
if [ -z "${GATEWAY_TEST_PG_DSN:-}" ]; then
  scripts/pg.sh start >/dev/null
fi
