package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestRead(t *testing.T) {
	vcs := func(rev, time, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: time}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	for _, tt := range []struct {
		name                         string
		bi                           *debug.BuildInfo
		version, commit, date, dirty string // stamped
		want                         Info
	}{
		{"no build info", nil, "", "", "", "", Info{Version: Base}},
		{"a test binary", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "", "", "", "", Info{Version: Base}},
		{"a checkout, clean", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261202120000-0123456789ab"}, Settings: vcs(rev, "2026-12-02T12:00:00Z", "false")},
			"", "", "", "", Info{Version: Base + "+0123456789ab", Commit: rev, Date: "2026-12-02T12:00:00Z"}},
		{"a checkout, dirty", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261202120000-0123456789ab+dirty"}, Settings: vcs(rev, "2026-12-02T12:00:00Z", "true")},
			"", "", "", "", Info{Version: Base + "+0123456789ab.dirty", Commit: rev, Date: "2026-12-02T12:00:00Z", Dirty: true}},
		{"go install @v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "", "", "", "", Info{Version: "1.2.3"}},
		{"go install @v1.3.0-rc.1", &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0-rc.1"}}, "", "", "", "", Info{Version: "1.3.0-rc.1"}},
		{"a pseudo-version after a tag", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.4-0.20261202120000-0123456789ab"}}, "", "", "", "", Info{Version: Base}},
		{"a release build", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("ffff", "2020-01-01T00:00:00Z", "true")},
			"2.0.0", rev, "2026-12-02T13:00:00Z", "false", Info{Version: "2.0.0", Commit: rev, Date: "2026-12-02T13:00:00Z"}},
	} {
		got := read(tt.bi, tt.version, tt.commit, tt.date, tt.dirty)
		got.GoVersion = ""
		if got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
