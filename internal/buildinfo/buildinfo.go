// Package buildinfo says what this binary is: its version, the commit it
// was built from, when, and whether the tree had changes not committed.
//
// A release build stamps them with the linker:
//
//	go build -ldflags "-X github.com/nexo-project/nexo/internal/buildinfo.version=1.2.3
//	    -X github.com/nexo-project/nexo/internal/buildinfo.commit=abc123...
//	    -X github.com/nexo-project/nexo/internal/buildinfo.date=2026-12-02T12:00:00Z" ./cmd/nexo
//
// Otherwise they come from what Go records in every binary: the module's
// version for `go install github.com/nexo-project/nexo/cmd/nexo@v1.2.3`, and
// the VCS revision, time and modified flag of a build from a checkout.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Base is the version of a build that is neither stamped nor installed
// at a released version: the development line.
const Base = "0.1.0"

// Set by the linker (-X) in release builds.
var version, commit, date, dirty string

// Info is what a binary is.
type Info struct {
	// Version is SemVer: a release's own ("1.2.3"), or Base with the
	// commit as build metadata for a build from a checkout
	// ("0.1.0+abc123def456", "+abc123def456.dirty" with changes not
	// committed).
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Date      string `json:"date,omitempty"` // RFC 3339: the commit's time, or the release build's
	Dirty     bool   `json:"dirty"`
	GoVersion string `json:"go_version"`
}

// Read returns what this binary is.
var Read = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo()
	return read(bi, version, commit, date, dirty)
})

// read works out Info from the build info and the stamped values.
func read(bi *debug.BuildInfo, version, commit, date, dirty string) Info {
	in := Info{Version: version, Commit: commit, Date: date, Dirty: dirty == "true", GoVersion: runtime.Version()}
	if bi != nil {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && in.Commit == "":
				in.Commit = s.Value
			case s.Key == "vcs.time" && in.Date == "":
				in.Date = s.Value
			case s.Key == "vcs.modified" && dirty == "":
				in.Dirty = s.Value == "true"
			}
		}
		if v := strings.TrimPrefix(bi.Main.Version, "v"); in.Version == "" && released(v) {
			in.Version = v
		}
	}
	if in.Version == "" {
		in.Version = Base
		if in.Commit != "" {
			in.Version += "+" + short(in.Commit)
			if in.Dirty {
				in.Version += ".dirty"
			}
		}
	}
	return in
}

// released reports whether a module version is a release: not "(devel)",
// nor a pseudo-version made of a commit (v0.0.0-20261202120000-abc123def456).
func released(v string) bool {
	if v == "" || v == "(devel)" || strings.Contains(v, "+") {
		return false
	}
	parts := strings.Split(v, "-")
	last := parts[len(parts)-1]
	return len(parts) < 3 || len(last) != 12 // a pseudo-version ends in a 12-digit commit
}

// short is a commit's first 12 characters, as Go's pseudo-versions show it.
func short(c string) string { return c[:min(12, len(c))] }
