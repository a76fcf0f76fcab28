#!/bin/sh
# One-shot set-up of the docker-compose stack (the `init` service):
#
#   init.sh DATA_DIR...
#
# - creates the slot secret and the upload ID key once, in KEYS_DIR;
# - gives every gateway's data directory (the arguments) the same id.key, owned
#   by the user the gateway runs as (OWNER), mode 0600 — uploadgate refuses a
#   key file that group or others can read;
# - creates the bucket directory BUCKET_DIR for versitygw's posix backend.
#
# Running it again changes nothing; a data directory that already holds a
# different id.key stops it, because uploads there were named with that key.
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
# The gateways and Prosody (other users) read the slot secret; only this
# script reads id.key.
chmod 0444 "$KEYS_DIR/slot-secret"
chmod 0400 "$KEYS_DIR/id.key"

for dir in "$@"; do
	mkdir -p "$dir"
	if [ -e "$dir/id.key" ] && [ "$(tr -d ' \n' <"$dir/id.key")" != "$(cat "$KEYS_DIR/id.key")" ]; then
		echo "init: $dir/id.key differs from $KEYS_DIR/id.key; uploads in $dir were named with it, not replacing it" >&2
		exit 1
	fi
	cp "$KEYS_DIR/id.key" "$dir/id.key.tmp"
	chown "$OWNER" "$dir" "$dir/id.key.tmp"
	chmod 0700 "$dir"
	chmod 0600 "$dir/id.key.tmp"
	mv "$dir/id.key.tmp" "$dir/id.key"
done

if [ -n "$BUCKET_DIR" ]; then
	mkdir -p "$BUCKET_DIR"
fi
echo "init: done"
