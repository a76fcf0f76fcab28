// Command uploadgate-healthcheck asks a running uploadgate whether it is up.
// It is the HEALTHCHECK of the container image, which has neither a shell nor
// curl.
//
//	uploadgate-healthcheck [URL]
//
// Without URL it asks http://<UPLOADGATE_LISTEN>/healthz, with 127.0.0.1 in
// place of an empty or unspecified host (":8080", "0.0.0.0:8080", "[::]:8080").
// Give the URL when the gateway's address comes from a config file instead of
// the environment. It exits 0 on a 200 answer and 1 on anything else, within
// five seconds.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

const timeout = 5 * time.Second

func main() {
	target, err := targetURL(os.Args[1:], os.Getenv("UPLOADGATE_LISTEN"))
	if err == nil {
		err = check(target)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "uploadgate-healthcheck:", err)
		os.Exit(1)
	}
}

// targetURL is the URL to ask: the argument, or /healthz at the listen address.
func targetURL(args []string, listen string) (*url.URL, error) {
	switch len(args) {
	case 0:
	case 1:
		u, err := url.Parse(args[0])
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return nil, fmt.Errorf("want an http:// URL, got %q", args[0])
		}
		if u.Path == "" {
			u.Path = "/"
		}
		return u, nil
	default:
		return nil, fmt.Errorf("usage: uploadgate-healthcheck [URL]")
	}
	if listen == "" {
		listen = "127.0.0.1:8080" // the default of uploadgate serve --listen
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("UPLOADGATE_LISTEN %q: want host:port", listen)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/healthz"}, nil
}

// check sends one GET and wants a 200.
func check(u *url.URL) error {
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: uploadgate-healthcheck\r\n\r\n", u.RequestURI(), u.Host); err != nil {
		return err
	}
	status, err := bufio.NewReader(io.LimitReader(conn, 4096)).ReadString('\n')
	if err != nil {
		return fmt.Errorf("%s: no answer: %v", u.Redacted(), err)
	}
	// "HTTP/1.1 200 OK"
	if f := strings.Fields(status); len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") || f[1] != "200" {
		return fmt.Errorf("%s: %s", u.Redacted(), strings.TrimSpace(status))
	}
	return nil
}
