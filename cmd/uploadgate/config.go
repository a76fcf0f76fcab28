package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"

	"github.com/BurntSushi/toml"
)

// applyConfigFile fills every flag of fs that neither the command line nor
// the environment has set (parseFlags must have run) from the TOML file at
// path. Its keys are the flag names (`max-size = "100MiB"`, `secret-file =
// "/etc/uploadgate/secrets"`); a list flag takes a string or an array of
// strings. Unknown keys and bad values are usage errors naming the key.
// Error messages never repeat a value from the file: it may hold secrets.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	data, err := os.ReadFile(path)
	if err != nil {
		return usageError(fmt.Sprintf("invalid --config: %v", err))
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := fmt.Sprintf("invalid --config %s: TOML syntax error on line %d", path, pe.Position.Line)
			if pe.LastKey != "" {
				msg += fmt.Sprintf(" (after key %q)", pe.LastKey)
			}
			return usageError(msg)
		}
		return usageError(fmt.Sprintf("invalid --config %s: not a TOML file", path))
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			msg := fmt.Sprintf("unknown key %q in config file %s", k, path)
			if _, table := raw[k].(map[string]any); table {
				msg += " (keys are flag names, without sections: s3-bucket = \"…\")"
			}
			return usageError(msg)
		}
		vals, err := configValues(raw[k], isList(f))
		if err != nil {
			return usageError(fmt.Sprintf("invalid key %q in config file %s: %v", k, path, err))
		}
		if set[k] {
			continue
		}
		for _, v := range vals {
			if err := fs.Set(k, v); err != nil {
				return usageError(fmt.Sprintf("invalid key %q in config file %s: %v", k, path, err))
			}
		}
	}
	return nil
}

func isList(f *flag.Flag) bool {
	_, ok := f.Value.(*listFlag)
	return ok
}

// configValues turns a TOML value into the flag values to set: one for a
// scalar, one per element of an array (only for list flags).
func configValues(v any, list bool) ([]string, error) {
	if arr, ok := v.([]any); ok {
		if !list {
			return nil, errors.New("want a single value, not an array")
		}
		out := make([]string, 0, len(arr))
		for _, e := range arr {
			s, err := configScalar(e)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := configScalar(v)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}

func configScalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case map[string]any:
		return "", errors.New("want a value, not a table (keys are flag names, without sections)")
	default:
		return "", errors.New("want a string, number or boolean")
	}
}
