#!/usr/bin/env bash
# Release packages, built and checked (issue 19; docs/operations.md, "Install").
# goreleaser builds a snapshot (`goreleaser release --snapshot --clean`:
# nothing is published), the script checks what dist/ holds (SHA256SUMS, an
# SBOM per archive, the .deb and the .rpm), installs the linux amd64 .deb on
# this machine with dpkg -i and checks the installed package: `nexo --version`
# shows the version goreleaser stamped and the commit, systemd-analyze verify
# accepts the units, the configs in /etc/nexo pass `--check`, no unit is
# enabled. Then it purges the package and checks that it is gone.
#
#   bash .ci/release.sh         # what CI runs (.ci/run): the linux amd64 build only
#   bash .ci/release.sh --all   # every target of .goreleaser.yaml, as a real release builds
#
# Run it as root on a Debian machine (dpkg, apt-get) without nexo installed:
# it refuses to install over an installed nexo or its configuration files.
# dist/ and build/ are left for a look afterwards; .gitignore keeps them out of git.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned, like staticcheck in .ci/run. syft makes the SBOMs: goreleaser's
# `sboms:` runs it from PATH.
GORELEASER_VERSION=v2.17.0
SYFT_VERSION=v1.57.1

# The same Go as .ci/run (see there: go1.26.8's standard library has
# vulnerabilities nexo calls). The binaries are built with it, and so are the tools.
export GOTOOLCHAIN=go1.26.11

step() { printf '\n--- release: %s (%ds)\n' "$*" "$SECONDS"; }
fail() { printf 'release: %s\n' "$*" >&2; exit 1; }

all=false
case "${1:-}" in
  "") ;;
  --all) all=true ;;
  *) fail "usage: $0 [--all]" ;;
esac

[ "$(id -u)" = 0 ] || fail "run as root: the check installs the .deb with dpkg -i"
command -v dpkg >/dev/null 2>&1 || fail "dpkg is missing: the check installs the .deb (a Debian machine)"

# Refuse before building anything: the check installs nexo, then purges it,
# and a purge would take an admin's nexo and its configuration along.
status=$(dpkg-query -W -f='${db:Status-Status}' nexo 2>/dev/null || true)
if [ -n "$status" ] && [ "$status" != not-installed ]; then
  fail "the package nexo is on this machine already (dpkg status: $status): dpkg --purge nexo first"
fi
for f in /usr/bin/nexo /etc/nexo/nexo.toml /etc/nexo/worker.toml \
         /usr/lib/systemd/system/nexo.service /usr/lib/systemd/system/nexo-worker.service; do
  [ ! -e "$f" ] || fail "$f exists already: the check would install over it and purge it"
done
# Units installed by hand (deploy/systemd) would stand in for the packaged ones.
hand=$(find /etc/systemd/system -name 'nexo*' 2>/dev/null || true)
[ -z "$hand" ] || fail "nexo's units are in /etc/systemd/system already: $hand"

step "tools: goreleaser $GORELEASER_VERSION and syft $SYFT_VERSION"
go version
bindir=$(go env GOBIN)
if [ -z "$bindir" ]; then
  gopath=$(go env GOPATH)
  bindir=${gopath%%:*}/bin
fi
export PATH="$bindir:$PATH"
# built MODULE VERSION BINARY [PATTERN]: the BINARY found on PATH was built
# from MODULE at VERSION (and Go's record of its build shows PATTERN).
built() {
  local bin info
  bin=$(command -v "$3" 2>/dev/null) || return 1
  info=$(go version -m "$bin" 2>/dev/null) || return 1
  printf '%s\n' "$info" | awk -v m="$1" -v v="$2" '$1 == "mod" && $2 == m && $3 == v { ok = 1 } END { exit !ok }' || return 1
  [ -z "${4:-}" ] || printf '%s\n' "$info" | grep -qF -- "$4"
}
# Installed from the Go module proxy, whatever GOFLAGS the caller set for
# nexo's own builds. Each takes about 4 minutes of 2 cores on a new machine.
if ! built github.com/goreleaser/goreleaser/v2 "$GORELEASER_VERSION" goreleaser; then
  GOFLAGS= go install "github.com/goreleaser/goreleaser/v2@${GORELEASER_VERSION}"
fi
# syft stamped with its version as its own releases are: the SBOMs name
# their maker ("Tool: syft-1.57.1", not "syft-[not provided]").
if ! built github.com/anchore/syft "$SYFT_VERSION" syft "main.version=${SYFT_VERSION#v}"; then
  GOFLAGS= go install -ldflags="-X main.version=${SYFT_VERSION#v}" "github.com/anchore/syft/cmd/syft@${SYFT_VERSION}"
fi
built github.com/goreleaser/goreleaser/v2 "$GORELEASER_VERSION" goreleaser || fail "goreleaser on PATH is not $GORELEASER_VERSION: $(command -v goreleaser)"
built github.com/anchore/syft "$SYFT_VERSION" syft || fail "syft on PATH is not $SYFT_VERSION: $(command -v syft)"
# A stamped syft would ask the internet whether it is the newest; it is pinned.
export SYFT_CHECK_FOR_APP_UPDATE=false

step "the configuration"
# The whole configuration is checked as it is, every target included.
goreleaser check --config .goreleaser.yaml
if $all; then
  config=.goreleaser.yaml
  targets="linux_amd64 linux_arm64 darwin_amd64 darwin_arm64 windows_amd64 windows_arm64"
else
  # CI builds linux/amd64 alone: from a cold build cache the six targets take
  # about 6 minutes of 2 cores, one about 1, and CI needs that one only (the
  # .deb it installs). build/goreleaser-ci.yaml is .goreleaser.yaml with its
  # goos and goarch narrowed to linux and amd64; archives, SHA256SUMS, SBOMs
  # and the .deb and .rpm are made as a real release makes them.
  # A real release, and `bash .ci/release.sh --all`, build every target.
  config=build/goreleaser-ci.yaml
  targets="linux_amd64"
  mkdir -p build
  {
    echo "# Made by .ci/release.sh from .goreleaser.yaml for CI: linux/amd64 only. Do not edit."
    sed -e 's/^\(    goos: \)\[linux, darwin, windows\]$/\1[linux]/' \
        -e 's/^\(    goarch: \)\[amd64, arm64\]$/\1[amd64]/' .goreleaser.yaml
  } > "$config"
  # Exactly those two lines changed, or the shape of .goreleaser.yaml did
  # and this narrowing needs a look.
  changed=$(diff .goreleaser.yaml "$config" | grep -c '^>' || true)
  if [ "$changed" != 3 ] || ! grep -qx '    goos: \[linux\]' "$config" || ! grep -qx '    goarch: \[amd64\]' "$config"; then
    diff .goreleaser.yaml "$config" >&2 || true
    fail "could not narrow .goreleaser.yaml's builds to linux/amd64 (see the diff above)"
  fi
  goreleaser check --config "$config"
fi

# goreleaser stamps the commit it reads with git (-X ...buildinfo.commit).
# It asks git for the remote's URL too, and in snapshot mode an error there
# makes it stamp "none" for every git fact, the commit included. A clone
# (CI's) has origin; a repository made with `git init` has no remote: give
# this run the checkout's own path as origin's URL, in the environment only.
if ! git ls-remote --get-url >/dev/null 2>&1; then
  n=${GIT_CONFIG_COUNT:-0}
  export "GIT_CONFIG_KEY_$n=remote.origin.url" "GIT_CONFIG_VALUE_$n=$PWD" GIT_CONFIG_COUNT=$((n + 1))
fi
commit=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "release: note: the work tree has changes not committed; the packages hold them, stamped with commit $commit"
fi

step "goreleaser release --snapshot --clean --config $config"
goreleaser release --snapshot --clean --config "$config"

step "what dist/ holds"
# The version goreleaser stamped: the next patch after the newest tag, "-next".
version=$(sed -n 's/.*"version":"\([^"]*\)".*/\1/p' dist/metadata.json)
printf '%s\n' "$version" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+' || fail "no version in dist/metadata.json: $(cat dist/metadata.json)"
grep -qF "\"commit\":\"$commit\"" dist/metadata.json || fail "dist/metadata.json does not name commit $commit: $(cat dist/metadata.json)"
echo "version $version, commit $commit"
[ -s dist/SHA256SUMS ] || fail "dist/SHA256SUMS is missing"
(cd dist && sha256sum --check --strict --quiet SHA256SUMS) || fail "dist/SHA256SUMS does not match the files"
listed() { awk -v f="$1" '$2 == f { ok = 1 } END { exit !ok }' dist/SHA256SUMS || fail "dist/SHA256SUMS does not list $1"; }
for t in $targets; do
  case $t in windows_*) archive=nexo_${version}_$t.zip ;; *) archive=nexo_${version}_$t.tar.gz ;; esac
  sbom=$archive.sbom.json
  [ -s "dist/$archive" ] || fail "dist/$archive is missing"
  [ -s "dist/$sbom" ] || fail "dist/$sbom (the SBOM of $archive) is missing"
  # An SPDX document about that archive that lists Go modules (nexo's dependencies).
  grep -q '"spdxVersion":"SPDX-' "dist/$sbom" || fail "dist/$sbom is not an SPDX document"
  grep -qF "\"name\":\"$archive\"" "dist/$sbom" || fail "dist/$sbom is not about $archive"
  grep -q '"SPDXRef-Package-go-module-' "dist/$sbom" || fail "dist/$sbom lists no Go module"
  listed "$archive"; listed "$sbom"
  case $t in
    linux_*)
      for p in deb rpm; do
        [ -s "dist/nexo_${version}_$t.$p" ] || fail "dist/nexo_${version}_$t.$p is missing"
        listed "nexo_${version}_$t.$p"
      done ;;
  esac
  echo "$t: $archive and its SBOM$(case $t in linux_*) echo ", .deb and .rpm" ;; esac), all in SHA256SUMS"
done

step "dpkg -i the linux amd64 .deb"
deb=dist/nexo_${version}_linux_amd64.deb
installed=false
# On the way out, by success or failure, the package goes.
cleanup() {
  if $installed && dpkg-query -W -f='${db:Status-Status}' nexo 2>/dev/null | grep -qv not-installed; then
    echo "release: purging nexo"
    dpkg --purge nexo >/dev/null || true
  fi
}
trap cleanup EXIT
installed=true
dpkg -i "$deb"
[ "$(dpkg-query -W -f='${db:Status-Status}' nexo)" = installed ] || fail "dpkg -i $deb did not leave nexo installed"
dpkg-query -W -f='${Package} ${Version} ${Architecture}\n' nexo
conffiles=$(dpkg-query -W -f='${Conffiles}' nexo)
for f in /etc/nexo/nexo.toml /etc/nexo/worker.toml; do
  printf '%s\n' "$conffiles" | grep -q " $f " || fail "$f is not a configuration file of the package (kept across upgrades): $conffiles"
done

step "nexo --version: the stamped version and commit"
out=$(/usr/bin/nexo --version)
echo "$out"
case $out in
  "nexo $version (commit $commit, "*) ;;
  *) fail "nexo --version does not show version $version and commit $commit" ;;
esac
json=$(/usr/bin/nexo version --json)
echo "$json"
field() { printf '%s\n' "$json" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
[ "$(field version)" = "$version" ] || fail "nexo version --json: version is not $version"
[ "$(field commit)" = "$commit" ] || fail "nexo version --json: commit is not $commit"
[ "$(field go_version)" = "$(go env GOVERSION)" ] || fail "nexo version --json: built with $(field go_version), not $(go env GOVERSION)"

step "systemd-analyze verify the installed units"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
command -v systemd-analyze >/dev/null 2>&1 || fail "systemd-analyze is missing and apt-get did not install it"
units="/usr/lib/systemd/system/nexo.service /usr/lib/systemd/system/nexo-worker.service"
for u in $units; do
  [ -f "$u" ] || fail "$u is not installed"
  # The packaged units run the packaged binary (the before hook in .goreleaser.yaml).
  grep -q '^ExecStart=/usr/bin/nexo ' "$u" || fail "$u does not run /usr/bin/nexo: $(grep '^ExecStart=' "$u")"
done
# A warning fails too: systemd ignores a line it does not know, and the
# hardening that line asked for would be gone without a word.
if ! out=$(systemd-analyze verify $units 2>&1) || [ -n "$out" ]; then
  printf '%s\n' "$out" >&2
  fail "systemd-analyze verify does not accept the units"
fi
echo "systemd-analyze verify: no errors or warnings"

step "the installed configs parse (--check)"
/usr/bin/nexo serve --config /etc/nexo/nexo.toml --check
/usr/bin/nexo worker --config /etc/nexo/worker.toml --check

step "the units are installed, not enabled"
# Enabling makes links under /etc/systemd/system (multi-user.target.wants).
links=$(find /etc/systemd/system -name 'nexo*' 2>/dev/null || true)
[ -z "$links" ] || fail "the package enabled units: $links"
if command -v systemctl >/dev/null 2>&1; then
  for u in nexo.service nexo-worker.service; do
    state=$(systemctl is-enabled "$u" 2>&1 || true)
    [ "$state" = disabled ] || fail "systemctl is-enabled $u: $state (want disabled)"
    echo "$u: $state"
  done
fi

step "man pages and shell completion"
extras="/usr/share/man/man1/nexo.1 /usr/share/man/man1/nexo-call.1 /usr/share/bash-completion/completions/nexo
        /usr/share/zsh/vendor-completions/_nexo /usr/share/fish/vendor_completions.d/nexo.fish"
for f in $extras; do
  [ -s "$f" ] || fail "$f is not installed"
done
grep -q '^nexo-call - send one request' /usr/share/man/man1/nexo-call.1 || fail "nexo-call.1 is not a man page: $(head -3 /usr/share/man/man1/nexo-call.1)"
echo "man pages and completion scripts installed"

step "dpkg --purge nexo"
dpkg --purge nexo
installed=false
for f in /usr/bin/nexo /etc/nexo/nexo.toml /etc/nexo/worker.toml $units $extras; do
  [ ! -e "$f" ] || fail "$f is still there after dpkg --purge nexo"
done
status=$(dpkg-query -W -f='${db:Status-Status}' nexo 2>/dev/null || true)
[ -z "$status" ] || [ "$status" = not-installed ] || fail "dpkg status of nexo after the purge: $status"
echo "nexo is gone"

step "release packages: ok"
