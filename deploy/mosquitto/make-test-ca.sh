#!/usr/bin/env bash
# Make a throwaway certificate authority, a broker certificate, and optional client certificates,
# for tests, benchmarks and trying SealTrail out. Not for production: use your organisation's
# PKI there (see README.md); this CA's key sits unencrypted next to its certificate.
#
#   deploy/mosquitto/make-test-ca.sh OUTDIR [CLIENT_NAME ...]
#
# OUTDIR gets ca.crt + ca.key, server.crt + server.key (names: SERVER_NAMES, by default
# localhost, 127.0.0.1 and ::1), and <name>.crt + <name>.key per CLIENT_NAME (clientAuth, CN =
# the name, e.g. a gateway id). Keys are ECDSA P-256 and mode 0600. An existing CA in OUTDIR is
# reused, so more clients can be added later; existing server and client files are replaced.
# Environment: SERVER_NAMES (subjectAltName list, e.g. "DNS:broker.example,IP:10.0.0.5"),
# DAYS (validity, default 825).
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
    [ $# -ge 1 ] && exit 0 || exit 2
fi
command -v openssl >/dev/null || { echo "make-test-ca.sh: openssl not found (apt-get install openssl)" >&2; exit 1; }
out=$1
shift
days=${DAYS:-825}
server_names=${SERVER_NAMES:-DNS:localhost,IP:127.0.0.1,IP:::1}
mkdir -p "$out"
umask 077
ext=$(mktemp)
trap 'rm -f "$ext" "$out"/*.csr' EXIT

newkey() {  # PATH: an unencrypted P-256 private key
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

sign() {  # NAME CN EXTENSIONS: NAME.key (new) and NAME.crt signed by the CA
    local name=$1 cn=$2
    newkey "$out/$name.key"
    openssl req -new -key "$out/$name.key" -subj "/O=SealTrail test/CN=$cn" -out "$out/$name.csr"
    printf '%s\n' "basicConstraints = critical, CA:FALSE" \
        "keyUsage = critical, digitalSignature" \
        "subjectKeyIdentifier = hash" "authorityKeyIdentifier = keyid, issuer" "$3" > "$ext"
    openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
        -CAcreateserial -CAserial "$out/ca.srl" -days "$days" -sha256 -extfile "$ext" \
        -out "$out/$name.crt" 2>/dev/null
    chmod 644 "$out/$name.crt"
}

if [ ! -s "$out/ca.key" ] || [ ! -s "$out/ca.crt" ]; then
    newkey "$out/ca.key"
    openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$days" \
        -subj "/O=SealTrail test/CN=SealTrail test CA" \
        -addext "basicConstraints = critical, CA:TRUE" \
        -addext "keyUsage = critical, keyCertSign, cRLSign" \
        -out "$out/ca.crt"
    chmod 644 "$out/ca.crt"
fi
first=${server_names%%,*}
sign server "${first#*:}" "extendedKeyUsage = serverAuth
subjectAltName = $server_names"
for name in "$@"; do
    case $name in
        ca|server|*/*|.*|"") echo "make-test-ca.sh: bad client name '$name'" >&2; exit 2 ;;
    esac
    sign "$name" "$name" "extendedKeyUsage = clientAuth"
done
echo "made in $out: ca.crt server.crt${*:+ $(printf '%s.crt ' "$@")}(with their .key files)"
