#!/usr/bin/env bash
# Installs what `make test` needs, and nothing that is already there.
#
#   scripts/install-test-deps.sh [all|lint|e2e]...   (default: all)
#
# Works on Debian (bookworm or newer) with Go installed, as root or through
# sudo. Safe to run again and again: every step first checks whether its
# result is already in place.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}

log() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
	SUDO=(sudo)
fi

# need_apt PKG...: apt-get install the packages that are not installed yet;
# `apt-get update` runs at most once per invocation of this script.
APT_UPDATED=0
need_apt() {
	local pkg missing=()
	for pkg in "$@"; do
		if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" != installed ]; then
			missing+=("$pkg")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	command -v apt-get >/dev/null 2>&1 || die "need ${missing[*]}, but apt-get is not available; install them by hand"
	if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
		die "need ${missing[*]}: run as root or install sudo"
	fi
	if [ "$APT_UPDATED" -eq 0 ]; then
		log "apt-get update"
		"${SUDO[@]}" apt-get update -qq
		APT_UPDATED=1
	fi
	log "apt-get install ${missing[*]}"
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# gobin: the directory `go install` writes to.
gobin() {
	local d
	d=$("$GO" env GOBIN)
	[ -n "$d" ] || d="$("$GO" env GOPATH)/bin"
	printf '%s\n' "$d"
}

# need_go_install PKG@VERSION: `go install` it unless the binary in GOBIN was
# built from exactly that module version with the current Go toolchain.
need_go_install() {
	local spec=$1 pkg=${1%@*} version=${1##*@}
	local bin
	bin="$(gobin)/${pkg##*/}"
	if [ -x "$bin" ]; then
		local info built mod
		info=$("$GO" version -m "$bin" 2>/dev/null || true)
		built=$(printf '%s\n' "$info" | awk 'NR==1 {print $2}')
		# awk reads to the end: one that exits early makes printf die of
		# SIGPIPE, which pipefail turns into a failure of the script.
		mod=$(printf '%s\n' "$info" | awk '$1 == "mod" && m == "" {m = $3} END {print m}')
		if [ "$mod" = "$version" ] && [ "$built" = "$("$GO" env GOVERSION)" ]; then
			return 0
		fi
	fi
	log "go install $spec"
	"$GO" install "$spec"
}

# need_node: Node.js >= 18 and npm, from apt when `node` is missing.
need_node() {
	if ! command -v node >/dev/null 2>&1; then
		need_apt nodejs npm
	fi
	command -v npm >/dev/null 2>&1 || need_apt npm
	local major
	major=$(node -p 'process.versions.node.split(".")[0]')
	[ "$major" -ge 18 ] || die "Node.js $(node --version) is too old; the tests need 18 or newer"
}

# need_npm_ci DIR: `npm ci` in DIR unless node_modules was installed from the
# current package.json and package-lock.json (a checksum stamp in node_modules).
need_npm_ci() {
	local dir=$1 stamp want
	stamp="$dir/node_modules/.install-stamp"
	want=$(cd "$dir" && cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
		return 0
	fi
	log "npm ci in ${dir#"$ROOT"/}"
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
	printf '%s\n' "$want" >"$stamp"
}

deps_lint() {
	need_go_install honnef.co/go/tools/cmd/staticcheck@v0.8.2 # staticcheck 2026.2.2
}

# need_proxies: nginx and caddy for test/e2e/proxy_test.go, which runs them as
# its own processes. Their packages would start (and enable) system services
# on ports 80 and 443: a policy-rc.d that refuses keeps them from starting
# during the installation, and services that got enabled are disabled again.
need_proxies() {
	local pkgs=(nginx-light caddy) missing=() pkg
	for pkg in "${pkgs[@]}"; do
		[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	local policy=/usr/sbin/policy-rc.d own_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
		"${SUDO[@]}" chmod 755 "$policy"
		own_policy=1
	fi
	local rc=0
	need_apt "${missing[@]}" || rc=$?
	if [ "$own_policy" -eq 1 ]; then
		"${SUDO[@]}" rm -f "$policy"
	fi
	[ "$rc" -eq 0 ] || die "installing ${missing[*]} failed"
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		"${SUDO[@]}" systemctl disable --now nginx.service caddy.service >/dev/null 2>&1 || true
	fi
}

deps_e2e() {
	need_proxies # nginx and caddy in front of the gateway (test/e2e/proxy_test.go)
	command -v systemd-analyze >/dev/null 2>&1 || need_apt systemd # systemd-analyze verify of deploy/systemd (deploy/systemd_test.go)
	need_apt redis-server redis-tools # the Redis session store tests; redis-cli creates the test Cluster
	need_apt prosody prosody-modules python3-slixmpp python3-aiohttp # the XEP-0363 tests with Prosody and a slixmpp client
	need_apt prometheus # promtool, for the alert rules in deploy/prometheus (deploy/deploy_test.go)
	need_apt clamav-daemon clamdscan # the virus-scan hook recipe (test/e2e/hooks_test.go; its own signature database, no download)
	need_go_install github.com/versity/versitygw/cmd/versitygw@v1.8.0 # the S3-compatible server of the s3 storage tests
	need_node
	need_npm_ci "$ROOT/test/js"
	need_apt chromium # the browser tests (test/browser drives it with playwright-core; no browser download)
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 need_npm_ci "$ROOT/test/browser"
}

command -v "$GO" >/dev/null 2>&1 || die "Go is not installed (https://go.dev/dl/)"
[ $# -gt 0 ] || set -- all
for what in "$@"; do
	case $what in
	all) deps_lint; deps_e2e ;;
	lint) deps_lint ;;
	e2e) deps_e2e ;;
	*) die "unknown group '$what' (want all, lint or e2e)" ;;
	esac
done
