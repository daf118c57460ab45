package cli

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestFlagsAnywhere: flags may follow the arguments, a negative number is
// an argument and not a flag, -- ends the flags, and a long flag with one
// dash (-addr), as the standard flag package read it, still works.
func TestFlagsAnywhere(t *testing.T) {
	addr := serve(t, nil)["native"]
	for _, tc := range []struct {
		args []string
		out  string
	}{
		{[]string{"call", "math.add", "1", "2", "--addr", addr}, "3\n"},
		{[]string{"call", "math.sub", "--addr", addr, "-5", "3"}, "-8\n"},
		{[]string{"call", "--addr=" + addr, "math.mul", "-4", "-5"}, "20\n"},
		{[]string{"call", "--addr", addr, "--", "math.sub", "-5", "-3"}, "-2\n"},
		{[]string{"call", "-addr", addr, "math.add", "-1", "-1"}, "-2\n"},
		{[]string{"call", "math.div", "-7", "2", "--json", "--addr", addr}, `{"method":"math.div","result":-3.5}` + "\n"},
		{[]string{"call", "--json", "--addr", addr, "sys.echo", "hi"}, `{"method":"sys.echo","result":"hi"}` + "\n"},
		{[]string{"call", "--json", "--addr", addr, "sys.subscribe", "stats"}, `{"method":"sys.subscribe","result":["stats"]}` + "\n"},
	} {
		out, errOut, err := run(nil, tc.args...)
		if err != nil || out != tc.out {
			t.Errorf("nexo %s: %q, %v (want %q)\n%s", strings.Join(tc.args, " "), out, err, tc.out, errOut)
		}
	}
}

// TestCompletion: the shell completion of call and describe offers the
// methods of the server that --addr or NEXO_ADDR names, through cobra's
// __complete and through bash itself with the generated script; the
// scripts for zsh and fish are generated too.
func TestCompletion(t *testing.T) {
	addr := serve(t, nil)["native"]
	out, _, err := run(map[string]string{"NEXO_ADDR": addr}, "__complete", "call", "math.")
	if err != nil || !strings.Contains(out, "math.add\t") || !strings.Contains(out, "math.div\t") || strings.Contains(out, "sys.echo") {
		t.Errorf("__complete call math.: %q %v", out, err)
	}
	out, _, err = run(nil, "__complete", "describe", "--addr", addr, "sys.")
	if err != nil || !strings.Contains(out, "sys.describe\t") || strings.Contains(out, "\nmath.") {
		t.Errorf("__complete describe sys.: %q %v", out, err)
	}
	// No server: no methods, and no error or delay worth noticing.
	out, _, err = run(nil, "__complete", "call", "--addr", "127.0.0.1:1", "")
	if err != nil || strings.Contains(out, "math.") {
		t.Errorf("__complete with no server: %q %v", out, err)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, _, err := run(nil, "completion", shell)
		if err != nil || !strings.Contains(out, "nexo") || len(out) < 1000 {
			t.Errorf("completion %s: %d bytes, %v", shell, len(out), err)
		}
	}

	if testing.Short() {
		t.Skip("builds the binary for bash")
	}
	// The script needs the bash-completion package, as bash needs it
	// for any program's completion.
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("bash-completion is not installed (apt-get install bash-completion)")
		}
		t.Skip("bash-completion is not installed")
	}
	dir := t.TempDir()
	if b, err := exec.Command("go", "build", "-o", filepath.Join(dir, "nexo"), "github.com/nexo-project/nexo/cmd/nexo").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	script := filepath.Join(dir, "nexo.bash")
	gen, _, err := run(nil, "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(gen), 0o644); err != nil {
		t.Fatal(err)
	}
	// What bash does on TAB after "nexo call math.a": the completion
	// function fills COMPREPLY.
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", `source `+bashCompletion+`
source "$1"
COMP_WORDS=(nexo call math.a); COMP_CWORD=2; COMP_LINE="nexo call math.a"; COMP_POINT=${#COMP_LINE}
__start_nexo
printf '%s\n' "${COMPREPLY[@]}"`, "bash", script)
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "NEXO_ADDR="+addr)
	b, err := cmd.Output() // stderr has compopt's complaint: this is not a real TAB
	if err != nil || strings.TrimSpace(string(b)) != "math.add" {
		t.Errorf("bash completion of 'nexo call math.a': %q %v", b, err)
	}
}

// TestReloadLogLevel: SIGHUP re-reads --log-level with the precedence of
// the start: NEXO_LOG_LEVEL wins over the config file (the file used to
// win on SIGHUP).
func TestReloadLogLevel(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "nexo.toml")
	if err := os.WriteFile(conf, []byte(`log-level = "debug"`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		want slog.Level
	}{{"", slog.LevelDebug}, {"warn", slog.LevelWarn}} {
		m := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(k string) string {
			if k == "NEXO_LOG_LEVEL" {
				return tc.env
			}
			return ""
		}}
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		fs.String("config", conf, "")
		level := new(slog.LevelVar)
		m.reloadLogLevel(fs, slog.New(slog.DiscardHandler), level)
		if level.Level() != tc.want {
			t.Errorf("NEXO_LOG_LEVEL=%q, the file says debug: level %v, want %v", tc.env, level.Level(), tc.want)
		}
	}
}

// TestForAdmins: a caller who is not an admin is told that the command
// is for admins and how to be one, not "UNKNOWN_METHOD: ... not
// permitted"; with the admin token it works.
func TestForAdmins(t *testing.T) {
	addr := serve(t, nil, "--admin-token", "s3cret")["native"]
	for _, args := range [][]string{{"clients"}, {"kick", "12345"}} {
		_, _, err := run(nil, append(args, "--addr", addr)...)
		if err == nil || !strings.Contains(err.Error(), "is for admins") || !strings.Contains(err.Error(), "--token") {
			t.Errorf("nexo %s without the admin token: %v", strings.Join(args, " "), err)
		}
	}
	if _, _, err := run(map[string]string{"NEXO_TOKEN": "s3cret"}, "clients", "--addr", addr); err != nil {
		t.Errorf("nexo clients with the admin token: %v", err)
	}
}
