package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/hooks/file"
	"github.com/tus/tusd/v2/pkg/hooks/grpc"
	hookhttp "github.com/tus/tusd/v2/pkg/hooks/http"
	"github.com/tus/tusd/v2/pkg/hooks/plugin"
	"github.com/uploadgate/uploadgate/gateway"
)

// hookFlags are tusd's hook options, with tusd's names, defaults and meanings.
type hookFlags struct {
	EnabledEvents      string
	Dir                string
	HTTP               string
	HTTPForwardHeaders string
	HTTPRetry          int
	HTTPBackoff        time.Duration
	HTTPTimeout        time.Duration
	HTTPSizeLimit      int64
	GRPC               string
	GRPCRetry          int
	GRPCBackoff        time.Duration
	GRPCForwardHeaders string
	Plugin             string
}

// tusdDefaultEvents is tusd's default of --hooks-enabled-events.
const tusdDefaultEvents = "pre-create,post-create,post-receive,post-terminate,post-finish"

func addHookFlags(fs *flag.FlagSet, h *hookFlags) {
	fs.StringVar(&h.EnabledEvents, "hooks-enabled-events", tusdDefaultEvents, "comma-separated hook events to emit: pre-create, post-create, post-receive, pre-finish, post-finish, pre-terminate, post-terminate (tusd's option)")
	fs.StringVar(&h.Dir, "hooks-dir", "", "directory of hook executables named after the events (tusd's file hooks)")
	fs.StringVar(&h.HTTP, "hooks-http", "", "URL to which hook events are POSTed as JSON (tusd's HTTP hooks)")
	fs.StringVar(&h.HTTPForwardHeaders, "hooks-http-forward-headers", "", "comma-separated client request headers forwarded to the HTTP hook endpoint")
	fs.IntVar(&h.HTTPRetry, "hooks-http-retry", 3, "retries of an HTTP hook request on a 5xx answer or a network error; also how often a failed post-* event is delivered again")
	fs.DurationVar(&h.HTTPBackoff, "hooks-http-backoff", time.Second, "wait before each retry of an HTTP hook request")
	fs.DurationVar(&h.HTTPTimeout, "hooks-http-timeout", 15*time.Second, "timeout of a hook request, retries included; a pre-* hook of any kind that takes longer gets the client 503")
	fs.Int64Var(&h.HTTPSizeLimit, "hooks-http-size-limit", 5*1024, "largest answer of the HTTP hook endpoint, in bytes")
	fs.StringVar(&h.GRPC, "hooks-grpc", "", "host:port of a gRPC hook service (tusd's hook.proto)")
	fs.IntVar(&h.GRPCRetry, "hooks-grpc-retry", 3, "retries of a gRPC hook call on a server error or network timeout; also how often a failed post-* event is delivered again")
	fs.DurationVar(&h.GRPCBackoff, "hooks-grpc-backoff", time.Second, "wait before each retry of a gRPC hook call")
	fs.StringVar(&h.GRPCForwardHeaders, "hooks-grpc-forward-headers", "", "comma-separated client request headers forwarded to the gRPC hook service as metadata")
	fs.StringVar(&h.Plugin, "hooks-plugin", "", "executable of a tusd hook plugin (hashicorp/go-plugin)")
}

// validate checks the hook options; each error names its option.
func (h *hookFlags) validate() error {
	n := 0
	for _, v := range []string{h.Dir, h.HTTP, h.GRPC, h.Plugin} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return usageError("invalid hook options: give one of --hooks-dir, --hooks-http, --hooks-grpc, --hooks-plugin")
	}
	if _, err := gateway.ParseHookEvents(h.EnabledEvents); err != nil {
		return usageError(fmt.Sprintf("invalid --hooks-enabled-events: %v", err))
	}
	if h.HTTP != "" && !strings.HasPrefix(h.HTTP, "http://") && !strings.HasPrefix(h.HTTP, "https://") {
		return usageError(fmt.Sprintf("invalid --hooks-http %q: want an http(s) URL", h.HTTP))
	}
	if h.HTTPRetry < 0 || h.GRPCRetry < 0 {
		return usageError("invalid --hooks-http-retry/--hooks-grpc-retry: must not be negative")
	}
	if h.HTTPBackoff < 0 || h.GRPCBackoff < 0 {
		return usageError("invalid --hooks-http-backoff/--hooks-grpc-backoff: must not be negative")
	}
	if h.HTTPTimeout <= 0 {
		return usageError("invalid --hooks-http-timeout: must be positive")
	}
	if h.HTTPSizeLimit <= 0 {
		return usageError("invalid --hooks-http-size-limit: must be positive")
	}
	return nil
}

// config builds the gateway's hook configuration from tusd's hook handlers;
// nil when no hook is configured.
func (h *hookFlags) config(jsonLogs bool) (*gateway.HookConfig, string) {
	events, _ := gateway.ParseHookEvents(h.EnabledEvents)
	c := &gateway.HookConfig{Events: events, Timeout: h.HTTPTimeout, Retries: h.HTTPRetry, Backoff: h.HTTPBackoff}
	switch {
	case h.Dir != "":
		dir, err := filepath.Abs(h.Dir)
		if err != nil {
			dir = h.Dir
		}
		c.Handler = &file.FileHook{Directory: dir}
		return c, "file"
	case h.HTTP != "":
		c.Handler = &hookhttp.HttpHook{
			Endpoint:       h.HTTP,
			MaxRetries:     h.HTTPRetry,
			Backoff:        h.HTTPBackoff,
			ForwardHeaders: splitList(h.HTTPForwardHeaders),
			Timeout:        h.HTTPTimeout,
			SizeLimit:      h.HTTPSizeLimit,
		}
		return c, "http"
	case h.GRPC != "":
		c.Retries, c.Backoff = h.GRPCRetry, h.GRPCBackoff
		c.Handler = &grpc.GrpcHook{
			Endpoint:       h.GRPC,
			MaxRetries:     h.GRPCRetry,
			Backoff:        h.GRPCBackoff,
			ForwardHeaders: splitList(h.GRPCForwardHeaders),
		}
		return c, "grpc"
	case h.Plugin != "":
		c.Handler = &plugin.PluginHook{Path: h.Plugin, JSONLogFormat: jsonLogs}
		return c, "plugin"
	}
	return nil, ""
}

// stopHookPlugins ends the processes of hook plugins.
func stopHookPlugins(kind string) {
	if kind == "plugin" {
		plugin.CleanupPlugins()
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// hookEventNames lists the enabled events for the start-up log.
func hookEventNames(c *gateway.HookConfig) string {
	names := make([]string, len(c.Events))
	for i, e := range c.Events {
		names[i] = string(e)
	}
	return strings.Join(names, ",")
}
