#!/usr/bin/env bash
# System packages the tests need: Debian's Chromium for the dashboard's browser test (Playwright drives it;
# never `playwright install`). Installs it as root (or through sudo); otherwise fails with the one command.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
command="apt-get update -qq && apt-get install -y -qq chromium"
if [ "$(id -u)" -eq 0 ]; then
  DEBIAN_FRONTEND=noninteractive bash -c "$command"
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo DEBIAN_FRONTEND=noninteractive bash -c "$command"
else
  echo "the browser tests need Debian's chromium: run  sudo apt-get install -y chromium  and retry" >&2
  exit 1
fi
