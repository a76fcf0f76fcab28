// Command uploadgate is a resumable upload gateway for XMPP (XEP-0363) and tus
// clients, built on tusd.
//
//	uploadgate serve [flags]       run the gateway
//	uploadgate sign [flags] NAME   mint a slot the way an XMPP server does
//	uploadgate version             print the version
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// errUsage marks configuration errors: one line naming the option, exit code 2.
var errUsage = errors.New("usage")

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
	case "serve":
		err = serve(args[1:], stdout, stderr)
	case "sign":
		err = sign(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		if len(args) > 1 && (args[1] == "-h" || args[1] == "--help" || args[1] == "-help") {
			fmt.Fprintln(stdout, "usage: uploadgate version   print the version")
			break
		}
		fmt.Fprintln(stdout, "uploadgate", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "uploadgate: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "uploadgate:", err)
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

const usage = `usage:
  uploadgate serve [flags]       run the gateway (uploadgate serve -h lists the flags)
  uploadgate sign [flags] NAME   mint a test slot the way an XMPP server does
  uploadgate version             print the version
`
