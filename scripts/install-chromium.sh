#!/usr/bin/env bash
# Installs Debian's headless Chromium (and ChromeDriver) for the browser tests: the load
# report (tests/test_load_report_browser.py) and the service-window console
# (tests/test_console_browser.py), plus a CJK font so Chinese pages render (screenshots).
# Idempotent: does nothing when chromium and a Chinese font are already present. Needs root
# (CI and developer machines run as root).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q .; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core fonts-wqy-microhei >&2
command -v chromium >/dev/null
