package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// loadConfigFile fills the flags given neither on the command line nor in
// the environment from a TOML file whose keys are flag names:
//
//	native-addr = "0.0.0.0:7070"
//	heartbeat = "5s"
//	max-conns = 20000
//
// So the precedence is: command line, then environment, then file, then
// the built-in defaults. An unknown key or a bad value is an error that
// names the file and the key.
func loadConfigFile(fs *pflag.FlagSet, path string) error {
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), toml.Parser()); err != nil {
		return usageError{fmt.Sprintf("--config %s: %v", path, err)}
	}
	keys := k.Keys()
	slices.Sort(keys)
	for _, key := range keys {
		f := fs.Lookup(key)
		if f == nil || key == "config" {
			return usageError{fmt.Sprintf("--config %s: unknown setting %q (keys are the flag names of 'nexo %s --help')", path, key, fs.Name())}
		}
		if f.Changed { // on the command line or in the environment
			continue
		}
		v := k.Get(key)
		var s string
		switch v := v.(type) {
		case []any: // a list, for flags that take comma-separated values
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			s = strings.Join(parts, ",")
		default:
			s = fmt.Sprint(v)
		}
		if err := fs.Set(key, s); err != nil {
			return usageError{fmt.Sprintf("--config %s: %s = %q: %v", path, key, s, err)}
		}
	}
	return nil
}

// configValue reads one setting from a config file ("" when absent).
func configValue(path, key string) (string, error) {
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), toml.Parser()); err != nil {
		return "", err
	}
	if !k.Exists(key) {
		return "", nil
	}
	return fmt.Sprint(k.Get(key)), nil
}
