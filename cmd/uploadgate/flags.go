package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// parseFlags parses args into fs, then fills every flag that is not on the
// command line from its environment variable UPLOADGATE_<NAME> (upper snake
// case). Flags override the environment. Positional arguments may come
// before, between or after flags. Errors name the option and wrap errUsage.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	fs.SetOutput(discard{})
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			// The flag package's error is kept: -h is flag.ErrHelp.
			return nil, usageErr{msg: err.Error(), cause: err}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		name := envName(f.Name)
		v, ok := lookupEnv(getenv, name)
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = usageError(fmt.Sprintf("invalid %s: %v", name, e))
		}
	})
	return positional, err
}

// lookupEnv is the value of an environment variable; an empty one counts as
// unset (UPLOADGATE_LISTEN="" leaves --listen to the config file or default).
func lookupEnv(getenv func(string) string, name string) (string, bool) {
	if getenv == nil {
		getenv = os.Getenv
	}
	v := getenv(name)
	return v, v != ""
}

// envName is the environment variable of a flag: --max-size → UPLOADGATE_MAX_SIZE.
func envName(flagName string) string {
	return "UPLOADGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// usageErr is a usage error (errUsage), with the error that caused it if any
// (flag.ErrHelp for -h).
type usageErr struct {
	msg   string
	cause error
}

func (e usageErr) Error() string { return e.msg }
func (e usageErr) Unwrap() []error {
	if e.cause == nil {
		return []error{errUsage}
	}
	return []error{errUsage, e.cause}
}

// printUsage prints a subcommand's usage line and its flags to w, for -h.
func printUsage(w io.Writer, fs *flag.FlagSet, line string) {
	fmt.Fprintln(w, line)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(discard{})
}

func usageError(msg string) error { return usageErr{msg: msg} }

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// byteSize is a flag value in bytes that accepts units: 100MiB, 2GB, 512k.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
		{"k", 1 << 10}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a size in bytes (e.g. 104857600 or 100MiB)")
	}
	if mult > 1 && n > (1<<62)/mult {
		return 0, fmt.Errorf("size too large")
	}
	return n * mult, nil
}

// listFlag is a comma-separated list that may also be given several times;
// the first value given replaces the default.
type listFlag struct {
	vals []string
	set  bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }

func (l *listFlag) Set(s string) error {
	if !l.set {
		l.vals, l.set = nil, true
	}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			l.vals = append(l.vals, p)
		}
	}
	return nil
}
