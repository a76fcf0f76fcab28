#!/bin/sh
# One-shot set-up of the docker-compose stack (the `init` service):
#
#   init.sh
#
# - creates the slot secret and the upload ID key once, in KEYS_DIR, where
#   both gateways read them (--secret-file, --id-key-file) and Prosody reads
#   the slot secret;
# - gives id.key to the user the gateways run as (OWNER), readable by it only;
# - creates the bucket directory BUCKET_DIR for versitygw's posix backend.
#
# Running it again changes nothing: existing keys are kept, because uploads
# were named with id.key and Prosody signs with the slot secret.
set -eu

KEYS_DIR=${KEYS_DIR:-/keys}
OWNER=${OWNER:-65532:65532}
BUCKET_DIR=${BUCKET_DIR:-}

umask 077

# gen FILE: 32 random bytes, hex-encoded, unless FILE exists.
gen() {
	[ -s "$1" ] && return 0
	head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$1.tmp"
	mv "$1.tmp" "$1"
	echo "init: created $1"
}

mkdir -p "$KEYS_DIR"
gen "$KEYS_DIR/slot-secret"
gen "$KEYS_DIR/id.key"
# The gateways and Prosody (other users) read the slot secret; only the
# gateways' user reads id.key.
chmod 0444 "$KEYS_DIR/slot-secret"
chown "$OWNER" "$KEYS_DIR/id.key"
chmod 0400 "$KEYS_DIR/id.key"

if [ -n "$BUCKET_DIR" ]; then
	mkdir -p "$BUCKET_DIR"
fi
echo "init: done"
