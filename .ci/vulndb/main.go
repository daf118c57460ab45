// Command vulndb turns the OSV files of a golang.org/x/vulndb module
// (its data/osv directory) into the v1 database layout that
// `govulncheck -db file:///DIR` reads:
//
//	DIR/index/db.json       {"modified": <latest entry modification>}
//	DIR/index/modules.json  [{"path": M, "vulns": [{"id", "modified", "fixed"}]}], sorted by path, then id
//	DIR/index/vulns.json    [{"id", "modified", "aliases"}], sorted by id
//	DIR/ID/<GO-ID>.json     each OSV entry, compacted
//
// It is its own module (see go.mod beside it), so it is not part of the
// nexo module's ./... and only needs golang.org/x/mod from the module proxy.
//
// Usage: go run . -osv $VULNDB/data/osv -out DIR
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// entry holds the fields of an OSV entry that the index needs.
type entry struct {
	ID       string   `json:"id"`
	Modified string   `json:"modified"`
	Aliases  []string `json:"aliases,omitempty"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
		Ranges []struct {
			Type   string `json:"type"`
			Events []struct {
				Introduced string `json:"introduced,omitempty"`
				Fixed      string `json:"fixed,omitempty"`
			} `json:"events"`
		} `json:"ranges"`
	} `json:"affected"`
}

type moduleVuln struct {
	ID       string `json:"id"`
	Modified string `json:"modified"`
	Fixed    string `json:"fixed,omitempty"`
}

type module struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vuln struct {
	ID       string   `json:"id"`
	Modified string   `json:"modified"`
	Aliases  []string `json:"aliases,omitempty"`
}

func main() {
	osvDir := flag.String("osv", "", "directory of OSV files (<GO-ID>.json), e.g. the vulndb module's data/osv")
	outDir := flag.String("out", "", "directory to write the database to")
	flag.Parse()
	if *osvDir == "" || *outDir == "" {
		log.Fatal("usage: vulndb -osv DIR -out DIR")
	}
	n, err := build(*osvDir, *outDir)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("vulndb: wrote %d entries to %s\n", n, *outDir)
}

func build(osvDir, outDir string) (int, error) {
	files, err := os.ReadDir(osvDir)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Join(outDir, "ID"), 0o755); err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Join(outDir, "index"), 0o755); err != nil {
		return 0, err
	}

	var (
		latest    time.Time
		latestStr = time.Time{}.Format(time.RFC3339)
		modules   = map[string]*module{}
		vulns     []vuln
	)
	for _, f := range files { // os.ReadDir sorts by name
		name := f.Name()
		if f.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(osvDir, name))
		if err != nil {
			return 0, err
		}
		var e entry
		if err := json.Unmarshal(raw, &e); err != nil {
			return 0, fmt.Errorf("%s: %v", name, err)
		}
		if name != e.ID+".json" {
			return 0, fmt.Errorf("%s: holds entry %q; files must be named <ID>.json", name, e.ID)
		}
		mod, err := time.Parse(time.RFC3339, e.Modified)
		if err != nil {
			return 0, fmt.Errorf("%s: modified: %v", name, err)
		}
		if mod.After(latest) {
			latest, latestStr = mod, e.Modified
		}
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &module{Path: a.Package.Name, Vulns: []moduleVuln{}}
				modules[a.Package.Name] = m
			}
			fixed := ""
			for _, r := range a.Ranges {
				if r.Type != "SEMVER" {
					continue
				}
				for _, ev := range r.Events {
					if ev.Fixed != "" && less(fixed, ev.Fixed) {
						fixed = ev.Fixed
					}
				}
				// Re-introduced after the latest fix: no version is known to be safe.
				for _, ev := range r.Events {
					if ev.Introduced != "" && ev.Introduced != "0" && less(fixed, ev.Introduced) {
						fixed = ""
						break
					}
				}
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified, Fixed: fixed})
		}
		vulns = append(vulns, vuln{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})

		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return 0, fmt.Errorf("%s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(outDir, "ID", name), buf.Bytes(), 0o644); err != nil {
			return 0, err
		}
	}
	if len(vulns) == 0 {
		return 0, fmt.Errorf("no OSV entries in %s", osvDir)
	}

	mods := make([]*module, 0, len(modules))
	for _, m := range modules {
		sort.SliceStable(m.Vulns, func(i, j int) bool { return m.Vulns[i].ID < m.Vulns[j].ID })
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	sort.SliceStable(vulns, func(i, j int) bool { return vulns[i].ID < vulns[j].ID })

	for file, v := range map[string]any{
		"db.json":      map[string]string{"modified": latestStr},
		"modules.json": mods,
		"vulns.json":   vulns,
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(outDir, "index", file), b, 0o644); err != nil {
			return 0, err
		}
	}
	return len(vulns), nil
}

// less reports whether OSV version v < w. OSV versions carry no "v" prefix
// (the standard library's may carry "go"); "" sorts before every version.
func less(v, w string) bool {
	return semver.Compare(canon(v), canon(w)) < 0
}

func canon(v string) string {
	v = strings.TrimPrefix(strings.TrimPrefix(v, "v"), "go")
	return "v" + v
}
