// Command ulbench measures uploadgate against stock tusd (same tusd module
// version, filestore or s3store with memorylocker) and a plain io.Copy-to-file
// server, and drives uploadgate through faults.
//
//	ulbench run [flags]      benchmarks (make bench); a table on stdout, JSON to -out
//	ulbench faults [flags]   fault suite (make faults)
//	ulbench profile [flags]  CPU profiles of the in-process gateway and stock tusd under load
//	ulbench soak [flags]     many small uploads: the session store's size after them
//
// The servers it starts itself, on loopback ports, each in its own process:
//
//	ulbench serve-tusd    stock tusd's handler
//	ulbench serve-copy    io.Copy of a PUT body into a file (the limit)
//	ulbench serve-gateway the gateway wired as `uploadgate serve` wires it, with pprof
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = runBench(args[1:], stdout)
	case "faults":
		err = runFaults(args[1:], stdout)
	case "profile":
		err = runProfile(args[1:], stdout)
	case "soak":
		err = runSoak(args[1:], stdout)
	case "serve-tusd":
		err = serveTusd(args[1:])
	case "serve-copy":
		err = serveCopy(args[1:])
	case "serve-gateway":
		err = serveGateway(args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ulbench: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ulbench:", err)
		return 1
	}
	return 0
}

const usage = `usage:
  ulbench run [flags]       benchmarks: uploadgate vs stock tusd vs io.Copy (ulbench run -h)
  ulbench faults [flags]    fault suite against uploadgate (ulbench faults -h)
  ulbench profile [flags]   CPU profiles of the gateway and stock tusd under load (ulbench profile -h)
  ulbench soak [flags]      many small uploads: the session store's size after them, with and without --history (ulbench soak -h)
`

// goBuild builds pkg (relative to the module root) into out.
func goBuild(out, pkg string, extra ...string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	args := append([]string{"build", "-o", out}, extra...)
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run ulbench inside the uploadgate module (or pass -uploadgate)")
	}
	return strings.TrimSuffix(mod, "/go.mod"), nil
}
