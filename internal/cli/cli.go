// Package cli is the nexo command line: serve, worker, call, describe,
// auto, bench, clients, kick, certs and version, on cobra. cmd/nexo runs
// it; package host runs serve and worker with methods of one's own.
//
// Every flag may also come from the environment as NEXO_ plus the flag name
// in upper case with '-' as '_' (NEXO_NATIVE_ADDR); a flag given on the
// command line wins.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
	case errors.As(err, new(usageError)):
		fmt.Fprintln(m.Stderr, "nexo:", err)
		return 2
	default:
		fmt.Fprintln(m.Stderr, "nexo:", err)
		return 1
	}
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// command is a nexo command as each command's file defines it: define
// adds its flags to fs and returns the function that runs it with the
// arguments left once the flags are parsed. By then every flag the
// command line did not set has been filled from the environment and, for
// a command with --config, from its file.
type command struct {
	use, short string
	// long and example are for the command's help, its man page and the
	// Markdown reference (docs/cli).
	long, example string
	define        func(fs *pflag.FlagSet) runFunc
	// completeMethods: a shell completes the first argument with the
	// names of the methods the server offers (call, describe).
	completeMethods bool
}

// runFunc runs a command with its arguments (the flags taken out).
type runFunc func(ctx context.Context, args []string) error

// commands are nexo's commands, in the order help lists them.
func (m *Main) commands() []command {
	return []command{
		{use: "serve", short: "run the server (a gateway too, with --nats)", define: m.serve,
			long: `Run the server: the native door (7070), the legacy door (7071), the web
door with the GUI and JSON-RPC (8080) and the admin door (8222), all on
loopback by default. With --nats it is a gateway that forwards the
methods it does not serve to workers. SIGINT or SIGTERM drains it; SIGHUP
re-reads --log-level from the config file.`,
			example: `  nexo serve
  nexo serve --config /etc/nexo/nexo.toml --check
  nexo serve --nats-embedded 127.0.0.1:4222 --services sys`},
		{use: "worker", short: "serve methods to gateways over NATS", define: m.worker,
			long: `Serve methods to gateways over NATS: nexo's own services, methods of an
HTTP JSON-RPC service (--upstream), or a program's own (package host).`,
			example: `  nexo worker --nats nats://127.0.0.1:4222 --services math
  nexo worker --upstream http://127.0.0.1:9000/rpc`},
		{use: "call METHOD [ARG...]", short: "send one request and print the result", define: m.call, completeMethods: true,
			long: `Send one request to the native door and print the result. math.* take two
64-bit integers; a JSON method takes one JSON argument, name=value pairs,
or values in the order of its params (nexo describe METHOD shows them).
Flags may follow the arguments, and a negative number is an argument.`,
			example: `  nexo call math.add 2 3
  nexo call math.sub -5 3
  nexo call --json math.div 7 2
  nexo call sys.describe '["math.add"]'`},
		{use: "describe [METHOD]", short: "what the server offers: every method, or one in full", define: m.describe, completeMethods: true,
			example: `  nexo describe
  nexo describe math.add
  nexo describe --json sys.info`},
		{use: "auto", short: "send a random math operation every interval", define: m.auto,
			long: `Send a random math operation every interval, as the original automatic
client did. After a kick, a shutdown or a network error it reconnects with
backoff and says so on stderr; it exits 1 once --give-up has passed.`,
			example: `  nexo auto --every 1s --count 5
  nexo auto --legacy --every 2s`},
		{use: "bench", short: "load test: closed loop, paced (-r), or idle connections (--idle)", define: m.bench,
			long: `Drive a door with load and print throughput and latency percentiles. A run
whose requests failed exits 1 unless --allow-errors; a paced run (-r) that
misses its rate warns by how much.`,
			example: `  nexo bench -c 50 -p 16 -d 10s
  nexo bench --door web -c 50 -d 5s
  nexo bench -r 20000 -d 10s --plot latency.svg
  nexo bench --idle --connections 2000 --sources 3 -d 5s    # past the 1000 a client address may hold`},
		{use: "clients", short: "list connected and recently closed clients (--cluster: every gateway's)", define: m.clients,
			example: `  nexo clients
  nexo clients --cluster
  nexo clients --json`},
		{use: "kick ID", short: "disconnect a client (admins): it gets GOODBYE with --reason", define: m.kick,
			example: `  nexo kick 12 --reason "maintenance"`},
		{use: "monitor", short: "print the requests and answers passing through the server (admins)", long: monitorLong, example: monitorExample, define: m.monitor},
		{use: "top", short: "a live view of the clients, doors and cluster; sort, filter and kick from the keyboard", long: topLong, example: topExample, define: m.top},
		{use: "certs", short: "make a development CA and certificates for TLS", define: m.certsCmd,
			example: `  nexo certs --dir certs --hosts localhost,127.0.0.1`},
		{use: "version", short: "print the version (also nexo --version)", define: m.version,
			example: `  nexo version --json`},
	}
}

const rootLong = `nexo: a client-server system for small, fast requests.

Every flag can also be set from the environment: NEXO_ and the flag's name
in upper case, dashes as underscores (NEXO_NATIVE_ADDR=...); the command
line wins. Flags may come anywhere on the line; after --, nothing is read
as a flag.`

func init() {
	cobra.EnableCommandSorting = false // help lists the commands in the order of commands()
}

// root builds the command tree.
func (m *Main) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "nexo",
		Short: "a client-server system for small, fast requests",
		Long:  rootLong,
		// An argument that names no command is an unknown command (a
		// usage error), not something for the root to run.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				cmd.SetOut(m.Stderr)
				_ = cmd.Usage()
				return usageError{"no command given (see 'nexo --help')"}
			}
			return usageError{fmt.Sprintf("unknown command %q (see 'nexo --help')", args[0])}
		},
		Version:           versionLine(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true, // the generated docs stay the same from day to day
	}
	root.SetVersionTemplate("nexo {{.Version}}\n")
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Sprintf("%v (see '%s --help')", err, cmd.CommandPath())}
	})
	for _, c := range m.commands() {
		root.AddCommand(m.cobraCommand(c))
	}
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [COMMAND]",
		Short: "help about any command",
		Long:  "Help about any command: its flags and examples.",
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return usageError{fmt.Sprintf("help: unknown command %q (see 'nexo --help')", strings.Join(args, " "))}
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
		ValidArgsFunction: func(_ *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var names []cobra.Completion
			for _, c := range root.Commands() {
				if len(args) == 0 && c.IsAvailableCommand() && strings.HasPrefix(c.Name(), prefix) {
					names = append(names, cobra.CompletionWithDesc(c.Name(), c.Short))
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	})
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" && !c.Runnable() {
			// "nexo completion" without a shell, or with an unknown one.
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(*cobra.Command, []string) error {
				return usageError{"completion: name a shell: bash, zsh, fish or powershell (see 'nexo completion --help')"}
			}
		}
	}
	return root
}

// ranKey is the context key of the flag that a command's own RunE began:
// an error before it is cobra's, about the command line.
type ranKey struct{}

// cobraCommand makes c a cobra command: flags defined, the environment
// and the config file applied before it runs.
func (m *Main) cobraCommand(c command) *cobra.Command {
	long := c.long
	if long == "" {
		long = strings.ToUpper(c.short[:1]) + c.short[1:] + "."
	}
	cmd := &cobra.Command{Use: c.use, Short: c.short, Example: c.example}
	fs := cmd.Flags()
	fs.SortFlags = false
	run := c.define(fs)
	var envs []string // the first flags' variables, as examples
	fs.VisitAll(func(f *pflag.Flag) {
		if len(envs) < 2 {
			envs = append(envs, envName(f.Name))
		}
	})
	if len(envs) > 0 {
		long += "\n\nEvery flag can also be set from the environment: NEXO_ and the flag's\nname in upper case, dashes as underscores (" + strings.Join(envs, ", ") + ", ...);\nthe command line wins."
	}
	cmd.Long = long
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if ran, ok := cmd.Context().Value(ranKey{}).(*bool); ok {
			*ran = true
		}
		if err := m.settle(fs); err != nil {
			return err
		}
		return run(cmd.Context(), args)
	}
	if c.completeMethods {
		cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveDefault
			}
			return m.completeMethods(cmd.Context(), fs, prefix), cobra.ShellCompDirectiveNoFileComp
		}
	}
	return cmd
}

// Run runs the command named by args[0].
func (m *Main) Run(ctx context.Context, args []string) error {
	root := m.root()
	root.SetArgs(normalizeArgs(root, args))
	ran := false
	err := root.ExecuteContext(context.WithValue(ctx, ranKey{}, &ran))
	if err != nil && !ran && !errors.As(err, new(usageError)) {
		// cobra refused the command line (an extra argument to a command
		// that takes none, say) before any command ran.
		return usageError{err.Error()}
	}
	return err
}

func (m *Main) version(fs *pflag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "print version, commit, date, dirty and go_version as JSON")
	return func(_ context.Context, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Sprintf("version takes no arguments, got %q", args)}
		}
		if *asJSON {
			b := buildinfo.Read()
			b.Version = Version
			out, _ := json.Marshal(b) // strings and a bool
			_, err := fmt.Fprintln(m.Stdout, string(out))
			return err
		}
		_, err := fmt.Fprintf(m.Stdout, "nexo %s\n", versionLine())
		return err
	}
}

// versionLine is the version and what built it: "1.2.0 (commit abc, date,
// go1.26.11)".
func versionLine() string {
	b := buildinfo.Read()
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
	return fmt.Sprintf("%s (%s)", Version, strings.Join(about, ", "))
}

// cmdlineAnnotation marks a flag set on the command line (not from the
// environment or a config file).
const cmdlineAnnotation = "nexo-cmdline"

// settle fills every flag the command line did not set from the
// environment and then, for a command with --config, from the config
// file. The flags the command line set are marked (onCommandLine).
func (m *Main) settle(fs *pflag.FlagSet) error {
	fs.Visit(func(f *pflag.Flag) {
		if f.Annotations == nil {
			f.Annotations = map[string][]string{}
		}
		f.Annotations[cmdlineAnnotation] = nil
	})
	var err error
	if m.Getenv != nil {
		fs.VisitAll(func(f *pflag.Flag) {
			if f.Changed || err != nil {
				return
			}
			key := envName(f.Name)
			if v := m.Getenv(key); v != "" {
				if e := fs.Set(f.Name, v); e != nil {
					err = usageError{fmt.Sprintf("%s=%q: %v", key, v, e)}
				}
			}
		})
	}
	if err != nil {
		return err
	}
	if cf := fs.Lookup("config"); cf != nil && cf.Value.String() != "" {
		return loadConfigFile(fs, cf.Value.String())
	}
	return nil
}

// onCommandLine reports whether the command line itself set the flag.
func onCommandLine(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	_, ok := f.Annotations[cmdlineAnnotation]
	return ok
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
