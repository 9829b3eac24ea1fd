#!/usr/bin/env bash
# Add or update an MQTT account in the broker's password file (mosquitto_passwd, hashed).
#
#   deploy/mosquitto/passwd.sh PASSWD_FILE USER [SECRET_FILE]
#
# USER is a gateway id or "customs". The password is read from SECRET_FILE if it exists;
# otherwise a random one is generated and written there (mode 0600) for the client's config
# (gateway.toml [customs] password_file). Without SECRET_FILE the password is read from the
# MQTT_PASSWORD environment variable, or generated and printed once.
# Reload the broker afterwards: systemctl reload mosquitto (it re-reads the file on SIGHUP).
set -euo pipefail

if [ $# -lt 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
    [ $# -ge 2 ] && exit 0 || exit 2
fi
command -v mosquitto_passwd >/dev/null || { echo "passwd.sh: mosquitto_passwd not found (apt-get install mosquitto)" >&2; exit 1; }
passwd_file=$1 user=$2 secret_file=${3:-}
case $user in
    ""|*/*|*+*|*"#"*|*:*|*" "*) echo "passwd.sh: bad user name '$user' (no / + # : or spaces)" >&2; exit 2 ;;
esac
umask 077
generated=false
if [ -n "$secret_file" ] && [ -s "$secret_file" ]; then
    password=$(head -n1 "$secret_file")
elif [ -z "$secret_file" ] && [ -n "${MQTT_PASSWORD:-}" ]; then
    password=$MQTT_PASSWORD
else
    password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')
    generated=true
    if [ -n "$secret_file" ]; then
        printf '%s\n' "$password" > "$secret_file"
    fi
fi
if [ -e "$passwd_file" ]; then
    mosquitto_passwd -b "$passwd_file" "$user" "$password"
else
    mosquitto_passwd -c -b "$passwd_file" "$user" "$password"
fi
if $generated && [ -z "$secret_file" ]; then
    echo "password for $user: $password"
fi
echo "passwd.sh: $user is in $passwd_file${secret_file:+ (password in $secret_file)}" >&2
