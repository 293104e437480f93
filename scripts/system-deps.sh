#!/usr/bin/env bash
# System packages the tests need: Debian's Chromium for the dashboard's browser test (Playwright drives it;
# never `playwright install`), and PostgreSQL for the Dagster-on-PostgreSQL test (it starts a throwaway
# cluster of its own with the package's initdb; no system service is used). Installs what is missing as
# root (or through sudo); otherwise fails with the one command. Nothing to do: returns at once.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
command="apt-get update -qq && apt-get install -y -qq ${missing[*]} >/dev/null"
if [ "$(id -u)" -eq 0 ]; then
  DEBIAN_FRONTEND=noninteractive bash -c "$command"
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo DEBIAN_FRONTEND=noninteractive bash -c "$command"
else
  echo "the tests need Debian's ${missing[*]}: run  sudo apt-get install -y ${missing[*]}  and retry" >&2
  exit 1
fi
