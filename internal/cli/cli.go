// Package cli is the nexo command line: serve, worker, call, describe,
// auto, bench, clients, certs and version. cmd/nexo runs it; package host
// runs serve and worker with methods of one's own.
//
// Every flag may also come from the environment as NEXO_ plus the flag name
// in upper case with '-' as '_' (NEXO_NATIVE_ADDR); a flag given on the
// command line wins.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/nexo-project/nexo/internal/buildinfo"
	"github.com/nexo-project/nexo/service"
)

// Version is this binary's version (package buildinfo): a release's, or
// buildinfo.Base with the commit for a build from a checkout.
var Version = buildinfo.Read().Version

// Main runs one nexo command. Tests use it to run commands in-process.
type Main struct {
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment; nil means no environment.
	Getenv func(string) string
	// Listening, when set, is called by serve with each door's real
	// address once it listens (ports given as 0 are resolved).
	Listening func(door, addr string)
	// Methods are served by serve and worker beside the services nexo
	// ships (package host passes a program's own).
	Methods []service.Method
}

// Exit runs the command named by args[0] and returns the process's exit
// status, having printed its error: 0, 1 for a failure, 2 for a mistake
// in the command line.
func (m *Main) Exit(ctx context.Context, args []string) int {
	err := m.Run(ctx, args)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0 // asked for: the usage is printed
	case errors.Is(err, errFlagPrinted):
		return 2 // the flag package printed the error and the usage
	case errors.As(err, new(usageError)):
		fmt.Fprintln(m.Stderr, "nexo:", err)
		return 2
	default:
		fmt.Fprintln(m.Stderr, "nexo:", err)
		return 1
	}
}

// errFlagPrinted wraps a mistake the flag package found in the command
// line, which it has printed already with the usage: exit status 2, and
// no second copy of the error.
var errFlagPrinted = errors.New("the command line's mistake, printed")

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `nexo: a client-server system for small, fast requests.

Usage:
  nexo serve   [flags]                  run the server (a gateway too, with --nats)
  nexo worker  [flags]                  serve methods to gateways over NATS
  nexo call    [flags] METHOD [ARG...]  send one request and print the result
  nexo describe [flags] [METHOD]        what the server offers: every method, or one in full (--json for scripts)
  nexo auto    [flags]                  send a random math operation every interval
  nexo bench   [flags]                  closed-loop load test
  nexo clients [flags]                  list connected and recently closed clients (--cluster: every gateway's)
  nexo kick    [flags] ID               disconnect a client (admins): it gets GOODBYE with --reason
  nexo certs   [flags]                  make a development CA and certificates for TLS
  nexo version [--json]                 print the version (also nexo --version)

Run 'nexo COMMAND -h' for a command's flags. Every flag can also be set
from the environment as NEXO_<FLAG> (NEXO_NATIVE_ADDR=...).
`

// Run runs the command named by args[0].
func (m *Main) Run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return usageError{"no command given"}
	}
	cmds := map[string]func(context.Context, []string) error{
		"serve":    m.serve,
		"worker":   m.worker,
		"call":     m.call,
		"describe": m.describe,
		"kick":     m.kick,
		"auto":     m.auto,
		"bench":    m.bench,
		"clients":  m.clients,
		"certs":    m.certsCmd,
		"version":  m.version,
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(m.Stdout, usage)
		return nil
	case "--version", "-version":
		return m.version(ctx, args[1:])
	}
	run, ok := cmds[args[0]]
	if !ok {
		fmt.Fprint(m.Stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	return run(ctx, args[1:])
}

func (m *Main) version(_ context.Context, args []string) error {
	fs := m.flags("version", "")
	asJSON := fs.Bool("json", false, "print version, commit, date, dirty and go_version as JSON")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	b := buildinfo.Read()
	b.Version = Version
	if *asJSON {
		out, _ := json.Marshal(b) // strings and a bool
		_, err := fmt.Fprintln(m.Stdout, string(out))
		return err
	}
	var about []string
	if b.Commit != "" {
		about = append(about, "commit "+b.Commit)
	}
	if b.Date != "" {
		about = append(about, b.Date)
	}
	if b.Dirty {
		about = append(about, "with changes not committed")
	}
	about = append(about, b.GoVersion)
	fmt.Fprintf(m.Stdout, "nexo %s (%s)\n", Version, strings.Join(about, ", "))
	return nil
}

// flags returns a FlagSet for a command that reports to m.Stderr.
func (m *Main) flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(m.Stderr, "Usage: nexo %s [flags] %s\n\nFlags (also NEXO_<FLAG> in the environment):\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses the command line, then fills every flag not given there
// from the environment, and then, for a command with --config, from the
// config file.
func (m *Main) parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errFlagPrinted, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	if m.Getenv != nil {
		fs.VisitAll(func(f *flag.Flag) {
			if given[f.Name] || err != nil {
				return
			}
			key := envName(f.Name)
			if v := m.Getenv(key); v != "" {
				if e := fs.Set(f.Name, v); e != nil {
					err = usageError{fmt.Sprintf("%s=%q: %v", key, v, e)}
				}
				given[f.Name] = true
			}
		})
	}
	if err != nil {
		return err
	}
	if cf := fs.Lookup("config"); cf != nil && cf.Value.String() != "" {
		return loadConfigFile(fs, cf.Value.String(), func(name string) bool { return given[name] })
	}
	return nil
}

// getenv reads the environment, or nothing when m has none.
func (m *Main) getenv(key string) string {
	if m.Getenv == nil {
		return ""
	}
	return m.Getenv(key)
}

// envName is the environment variable for a flag: NEXO_ + upper case, '-' as '_'.
func envName(flagName string) string {
	return "NEXO_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// given reports whether a flag was set on the command line or from the
// environment.
func (m *Main) given(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set || (m.Getenv != nil && m.Getenv(envName(name)) != "")
}
