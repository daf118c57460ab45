package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestGeneratedDocs: docs/cli (Markdown) and docs/man (man pages) are
// what the commands' definitions generate today. After changing a command,
// regenerate them with
//
//	NEXO_UPDATE_DOCS=1 go test -run TestGeneratedDocs ./internal/cli
func TestGeneratedDocs(t *testing.T) {
	mdDir, manDir := "../../docs/cli", "../../docs/man"
	if os.Getenv("NEXO_UPDATE_DOCS") != "" {
		if err := WriteDocs(mdDir, manDir); err != nil {
			t.Fatal(err)
		}
	}
	tmp := t.TempDir()
	if err := WriteDocs(filepath.Join(tmp, "cli"), filepath.Join(tmp, "man")); err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{filepath.Join(tmp, "cli"), mdDir}, {filepath.Join(tmp, "man"), manDir}} {
		want, _ := filepath.Glob(filepath.Join(pair[0], "nexo*"))
		have, _ := filepath.Glob(filepath.Join(pair[1], "nexo*"))
		if len(want) == 0 || len(want) != len(have) {
			t.Errorf("%s holds %d pages, the commands make %d: regenerate them (NEXO_UPDATE_DOCS=1 go test -run TestGeneratedDocs ./internal/cli)", pair[1], len(have), len(want))
			continue
		}
		for _, w := range want {
			gen, _ := os.ReadFile(w)
			kept, err := os.ReadFile(filepath.Join(pair[1], filepath.Base(w)))
			if err != nil || !bytes.Equal(gen, kept) {
				t.Errorf("%s is stale or missing: regenerate it (NEXO_UPDATE_DOCS=1 go test -run TestGeneratedDocs ./internal/cli)", filepath.Join(pair[1], filepath.Base(w)))
			}
		}
	}
}
