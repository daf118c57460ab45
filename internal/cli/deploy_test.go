package cli

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestKubernetesManifests: the flags and NEXO_* variables that
// deploy/kubernetes gives each command are flags that command has.
func TestKubernetesManifests(t *testing.T) {
	for _, file := range []string{"gateway.yaml", "worker.yaml"} {
		args, envs := manifestArgs(t, "../../deploy/kubernetes/"+file)
		if len(args) < 2 {
			t.Fatalf("%s: no container args found", file)
		}
		// --help after the flags: the help is printed, and no error
		// returned, only if every flag before it is known and has a valid
		// value.
		var help strings.Builder
		m := &Main{Stdout: &help, Stderr: &help, Getenv: func(string) string { return "" }}
		if err := m.Run(t.Context(), append(args, "--help")); err != nil || !strings.Contains(help.String(), "Usage:") {
			t.Errorf("%s: %q: %v\n%s", file, args, err, help.String())
		}
		for _, env := range envs {
			name := "-" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "NEXO_")), "_", "-") + " "
			if !strings.Contains(help.String(), name) {
				t.Errorf("%s: %s names no flag of %s (want %q in its usage)", file, env, args[0], name)
			}
		}
	}
}

// manifestArgs reads a manifest's container args and its NEXO_* variables.
func manifestArgs(t *testing.T, path string) (args, envs []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inArgs := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "args:":
			inArgs = true
		case inArgs && strings.HasPrefix(line, "- "):
			args = append(args, strings.TrimPrefix(line, "- "))
		default:
			inArgs = false
		}
		if v, ok := strings.CutPrefix(line, "- name: NEXO_"); ok {
			envs = append(envs, "NEXO_"+strings.Fields(v)[0])
		}
	}
	return args, envs
}

// TestCheckFlag: `serve --check` and `worker --check` validate the
// settings and exit without serving: deploy/systemd's config is valid, a
// bad key or value is a usage error naming it.
func TestCheckFlag(t *testing.T) {
	if out, _, err := run(nil, "serve", "--config", "../../deploy/systemd/nexo.toml", "--check"); err != nil || !strings.Contains(out, "valid") {
		t.Errorf("serve --check of deploy/systemd/nexo.toml: %q %v", out, err)
	}
	bad := t.TempDir() + "/bad.toml"
	if err := os.WriteFile(bad, []byte("max-conns = -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(nil, "serve", "--config", bad, "--check"); !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "max conns") {
		t.Errorf("serve --check of a bad config: %v", err)
	}
	if out, _, err := run(nil, "worker", "--config", "../../deploy/systemd/worker.toml", "--check"); err != nil || !strings.Contains(out, "valid") {
		t.Errorf("worker --check of deploy/systemd/worker.toml: %q %v", out, err)
	}
	if _, _, err := run(nil, "worker", "--nats-prefix", "a..b", "--check"); !errors.As(err, new(usageError)) {
		t.Errorf("worker --check with a bad prefix: %v", err)
	}
}
