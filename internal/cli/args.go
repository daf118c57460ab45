package cli

import (
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// normalizeArgs rewrites a command line so that pflag reads it as nexo
// always has, and more:
//   - -name, a long flag with one dash as the standard flag package
//     took it, becomes --name;
//   - flags may follow the arguments (nexo call math.add 1 2 --addr X);
//   - a negative number is an argument, not a flag (nexo call math.sub -5 3):
//     the flags are moved first and the arguments put after --.
//
// Anything after a -- stays an argument, as given.
func normalizeArgs(root *cobra.Command, args []string) []string {
	if len(args) == 0 {
		return args
	}
	switch args[0] { // the root's flags, with one dash as nexo once took them
	case "-help":
		return append([]string{"--help"}, args[1:]...)
	case "-version":
		return append([]string{"--version"}, args[1:]...)
	}
	cmd, _, err := root.Find(args[:1])
	if err != nil || cmd == root || cmd.Name() == "help" || cmd.Name() == cobra.ShellCompRequestCmd || cmd.Name() == cobra.ShellCompNoDescRequestCmd {
		return args
	}
	fs := cmd.Flags()
	var flags, positional []string
	negative := false
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			positional = append(positional, rest[i+1:]...)
			i = len(rest)
		case isNumber(a):
			negative = negative || strings.HasPrefix(a, "-")
			positional = append(positional, a)
		case strings.HasPrefix(a, "--"):
			flags = append(flags, a)
			if takesValue(fs, a[2:]) && i+1 < len(rest) {
				i++
				flags = append(flags, rest[i])
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && (fs.Lookup(name) != nil || name == "help") { // cobra adds --help later
				a = "-" + a // -addr, as the standard flag package read it
			}
			flags = append(flags, a)
			if takesValue(fs, strings.TrimLeft(a, "-")) && i+1 < len(rest) {
				i++
				flags = append(flags, rest[i])
			}
		default:
			positional = append(positional, a)
		}
	}
	out := append([]string{args[0]}, flags...)
	if negative || containsDashes(args[1:]) {
		out = append(out, "--")
	}
	return append(out, positional...)
}

// takesValue reports whether the flag named by arg (name or name=value,
// the dashes removed; a one-letter name may be a shorthand) reads the
// next argument as its value.
func takesValue(fs *pflag.FlagSet, arg string) bool {
	if strings.Contains(arg, "=") {
		return false
	}
	f := fs.Lookup(arg)
	if f == nil && len(arg) == 1 {
		f = fs.ShorthandLookup(arg)
	}
	return f != nil && f.NoOptDefVal == ""
}

// isNumber reports whether a is a number such as -5, 2.5 or -1e3.
func isNumber(a string) bool {
	_, err := strconv.ParseFloat(a, 64)
	return err == nil && a != "" && (a[0] == '-' || a[0] == '+' || a[0] == '.' || (a[0] >= '0' && a[0] <= '9'))
}

// containsDashes reports whether args hold a --.
func containsDashes(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return true
		}
	}
	return false
}
