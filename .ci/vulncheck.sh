#!/usr/bin/env bash
# Offline vulnerability check: runs a pinned govulncheck on the nexo module
# against a database built from a pinned golang.org/x/vulndb module, both
# fetched through the Go module proxy (vuln.go.dev is not reachable).
# Exits non-zero if govulncheck reports any vulnerability that our code calls.
#
# The standard library's vulnerabilities are judged against the Go toolchain
# that runs this script (`go version` below): run it with the toolchain
# that builds nexo.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned versions; bump VULNDB_VERSION to pick up newer advisories.
GOVULNCHECK_VERSION=v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go version

# 1. The vulndb module (its data/osv holds one OSV JSON file per GO-ID).
#    Downloaded from outside the nexo module so that go.mod/go.sum stay untouched.
info=$(cd "$tmp" && GOWORK=off go mod download -json "golang.org/x/vulndb@${VULNDB_VERSION}")
vulndb_dir=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [ -z "$vulndb_dir" ] || [ ! -d "$vulndb_dir/data/osv" ]; then
  echo "vulncheck: golang.org/x/vulndb@${VULNDB_VERSION} has no data/osv:" >&2
  printf '%s\n' "$info" >&2
  exit 1
fi

# 2. The v1 database layout govulncheck reads (index/db.json, index/modules.json,
#    ID/<GO-ID>.json), built by .ci/vulndb, a module of its own.
(cd .ci/vulndb && go run . -osv "$vulndb_dir/data/osv" -out "$tmp/db")

# 3. The pinned govulncheck, installed into a throwaway GOBIN.
GOBIN="$tmp/bin" go install "golang.org/x/vuln/cmd/govulncheck@${GOVULNCHECK_VERSION}"

# 4. Scan the default build (NATS server included) and the slim -tags nonats build.
#    govulncheck exits 3 when our code calls a vulnerable symbol.
"$tmp/bin/govulncheck" -version -db "file://$tmp/db"
echo "--- govulncheck ./..."
"$tmp/bin/govulncheck" -db "file://$tmp/db" ./...
echo "--- govulncheck -tags nonats ./..."
"$tmp/bin/govulncheck" -db "file://$tmp/db" -tags nonats ./...
