package cli

import (
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra/doc"
)

// manDate is the date the man pages carry. It is fixed, so that the pages
// kept in the repository are generated the same on any day.
var manDate = time.Date(2026, time.December, 1, 0, 0, 0, 0, time.UTC)

// WriteDocs writes the command reference generated from the commands'
// definitions: Markdown into mdDir (nexo.md, nexo_call.md, ...) and man
// pages into manDir (nexo.1, nexo-call.1, ...). The repository keeps them
// in docs/cli and docs/man; TestGeneratedDocs fails when they are stale.
func WriteDocs(mdDir, manDir string) error {
	root := (&Main{Stdout: io.Discard, Stderr: io.Discard}).root()
	root.Version = "(this build's)" // the pages do not change with each build's version
	root.InitDefaultVersionFlag()   // cobra adds them as it runs: the pages show them too
	root.InitDefaultHelpFlag()
	for _, dir := range []string{mdDir, manDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		old, _ := filepath.Glob(filepath.Join(dir, "nexo*"))
		for _, f := range old { // a command removed leaves no page behind
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	if err := doc.GenMarkdownTree(root, mdDir); err != nil {
		return err
	}
	return doc.GenManTree(root, &doc.GenManHeader{
		Title: "NEXO", Section: "1", Source: "nexo", Manual: "nexo manual", Date: &manDate,
	}, manDir)
}
