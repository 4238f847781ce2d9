#!/usr/bin/env bash
# Installs Debian's headless Chromium (and ChromeDriver) for the load report's browser
# test (tests/test_load_report_browser.py). Idempotent: does nothing when chromium is
# already on PATH. Needs root (CI and developer machines run as root).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core >&2
command -v chromium >/dev/null
