package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

// secretFilePoll is how often serve looks at --secret-file for a change.
const secretFilePoll = 5 * time.Second

// reloadSecrets re-reads --secret-file into verifier on SIGHUP, and whenever
// the file's content changes (checked every secretFilePoll: a Kubernetes
// Secret volume is updated in place, with no signal), until ctx ends. A file
// that cannot be read or holds no valid secret leaves the current secrets in
// place and is logged. Without --secret-file (secrets from --secret or the
// generated <data-dir>/secret.key) SIGHUP only logs that nothing is reloaded.
func reloadSecrets(ctx context.Context, c *serveConfig, verifier *auth.Verifier, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	var last []byte
	if c.SecretFile != "" {
		last, _ = os.ReadFile(c.SecretFile)
		t := time.NewTicker(secretFilePoll)
		defer t.Stop()
		tick = t.C
	}
	reload := func(why string) {
		secrets, err := readSecretFile(c.SecretFile)
		if err == nil {
			err = verifier.SetSecrets(secrets)
		}
		if err != nil {
			log.Error("slot secrets not reloaded; the current ones stay", "trigger", why, "err", err)
			return
		}
		log.Info("slot secrets reloaded", "trigger", why, "file", c.SecretFile, "secrets", len(secrets))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if c.SecretFile == "" {
				log.Warn("SIGHUP: slot secrets are reloaded from --secret-file only; nothing to reload")
				continue
			}
			last, _ = os.ReadFile(c.SecretFile)
			reload("SIGHUP")
		case <-tick:
			data, err := os.ReadFile(c.SecretFile)
			if err != nil || bytes.Equal(data, last) {
				continue // a file being replaced may be missing for a moment
			}
			last = data
			reload("file changed")
		}
	}
}

// readSecretFile reads the slot secrets of --secret-file, at start-up and on
// a reload.
func readSecretFile(path string) ([]string, error) {
	s, err := auth.ReadSecretFile(path)
	if err != nil {
		return nil, usageError("invalid --secret-file: " + err.Error())
	}
	if err := checkSecrets(s, "--secret-file"); err != nil {
		return nil, err
	}
	return s, nil
}

// minSecretLen is the shortest slot secret accepted, from --secret and from
// --secret-file alike.
const minSecretLen = 16

// checkSecrets applies the one rule for slot secrets, wherever they come
// from. The error names the option and the secret's position, never its value.
func checkSecrets(secrets []string, option string) error {
	for i, s := range secrets {
		if len(s) < minSecretLen {
			return usageError(fmt.Sprintf("invalid %s: secret %d of %d is shorter than %d characters", option, i+1, len(secrets), minSecretLen))
		}
	}
	return nil
}
