#!/usr/bin/env bash
# Install SealTrail and everything its tests use, on Debian 12 / Raspberry Pi OS (bookworm).
#
#   deploy/install.sh            system packages (sudo if not root), npm tools, ./.venv
#
# What it installs and why:
#   apt:  python3-venv (the package lives in ./.venv; Debian forbids pip into the system),
#         mosquitto (the MQTT broker the integration tests start on loopback),
#         nodejs + npm (only to fetch the two tools below),
#         gpsd + gpsd-clients (the gpsd source's tests run gpsfake: a real gpsd on a free port),
#         openssl (deploy/mosquitto/make-test-ca.sh makes the broker tests' CA and certificates),
#         postgresql (the customs store's production engine: the tests run every customs test
#         on it too, each session with its own cluster made by initdb on a free loopback port;
#         the Debian service the package starts is not used by the tests),
#         chromium (the customs trip report is opened in headless Chromium by its test;
#         installed without recommends, which would pull in printing and desktop services)
#   npm:  solc (solcjs, rebuilds the anchor contract to check the committed artifact),
#         @foundry-rs/anvil (the local EVM node the ledger integration tests drive),
#         and, project-local in tests/js/node_modules (`npm ci` from the committed
#         tests/js/package-lock.json, never global), digitalbazaar's VC libraries: the
#         independent verifier tests/test_credentials_node.py runs against our credentials
#   pip:  this package with its customs extra (PostgreSQL driver, web console, password
#         hashing: the demo ends in the console), its demo extra (eth-tester: the demo's
#         in-process EVM chain) and its test extras, editable, into ./.venv. A gateway
#         installs the package alone (deploy/raspberry-pi.md).
# Re-running it is safe: present things are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
SOLC_VERSION=0.8.37
ANVIL_VERSION=1.7.1

step() { printf '==> %s\n' "$*"; }

missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v npm >/dev/null || missing+=(nodejs npm)
{ command -v gpsd || [ -x /usr/sbin/gpsd ]; } >/dev/null || missing+=(gpsd)
command -v gpsfake >/dev/null || missing+=(gpsd-clients)
command -v openssl >/dev/null || missing+=(openssl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
lean=()
{ command -v chromium || [ -x /usr/bin/chromium ]; } >/dev/null || lean+=(chromium)
if [ ${#missing[@]} -gt 0 ] || [ ${#lean[@]} -gt 0 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ${#lean[@]} -gt 0 ]; then
    step "apt-get install --no-install-recommends ${lean[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${lean[@]}" >/dev/null
fi

if ! command -v solcjs >/dev/null || [ "$(solcjs --version | cut -d+ -f1)" != "$SOLC_VERSION" ]; then
    step "npm install -g solc@$SOLC_VERSION"
    $SUDO npm install -g --silent "solc@$SOLC_VERSION"
fi
if ! command -v anvil >/dev/null; then
    step "npm install -g @foundry-rs/anvil@$ANVIL_VERSION"
    $SUDO npm install -g --silent "@foundry-rs/anvil@$ANVIL_VERSION"
fi

# Re-run `npm ci` only when the lock file changed since the last install (its hash is kept
# inside node_modules, so deleting node_modules also triggers a reinstall).
VC_JS=tests/js
vc_lock_sum=$(sha256sum "$VC_JS/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$VC_JS/node_modules/.sealtrail-lock.sha256" 2>/dev/null)" != "$vc_lock_sum" ]; then
    step "npm ci in $VC_JS (credential verifier for the tests)"
    (cd "$VC_JS" && npm ci --silent --no-audit --no-fund)
    echo "$vc_lock_sum" > "$VC_JS/node_modules/.sealtrail-lock.sha256"
fi

if [ ! -x .venv/bin/python ]; then
    step "python3 -m venv .venv"
    python3 -m venv .venv
fi
step "pip install -e .[customs,demo,test] into .venv"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[customs,demo,test]"
step "ready: .venv/bin/sealtrail --help"
