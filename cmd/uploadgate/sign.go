package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/uploadgate/uploadgate/auth"
)

func sign(args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("sign", flag.ContinueOnError)
	var (
		secret     = fs.String("secret", "", "slot secret (the first of a comma-separated list is used)")
		secretFile = fs.String("secret-file", "", "file with slot secrets, one per line (the first is used)")
		baseURL    = fs.String("base-url", "http://127.0.0.1:8080/upload/", "the gateway's upload base URL")
		size       = fs.Int64("size", -1, "size of the file in bytes (required)")
		protocol   = fs.String("protocol", "v2", "slot protocol: v1, v2, token, v3 or jwt")
		ttl        = fs.Duration("ttl", 5*time.Minute, "lifetime of v3 and jwt slots")
		dir        = fs.String("dir", "", "slot directory (random when empty)")
	)
	var ctype optString
	fs.Var(&ctype, "type", "content type of the file (v2, token, jwt); absent means application/octet-stream")
	rest, err := parseFlags(fs, args, func(string) string { return "" })
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, fs, "usage: uploadgate sign [flags] NAME   print a slot's PUT URL, GET URL and (jwt) Authorization header")
		return nil
	}
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError("sign needs exactly one file NAME, e.g. uploadgate sign --secret S --size 5 hello.txt")
	}
	if *size < 0 {
		return usageError("invalid --size: required, a number of bytes")
	}
	s := strings.TrimSpace(strings.Split(*secret, ",")[0])
	if *secretFile != "" {
		if s != "" {
			return usageError("invalid --secret-file: give either --secret or --secret-file")
		}
		secrets, err := auth.ReadSecretFile(*secretFile)
		if err != nil || len(secrets) == 0 {
			return usageError(fmt.Sprintf("invalid --secret-file: %v", errOrEmpty(err)))
		}
		s = secrets[0]
	}
	if s == "" {
		return usageError("invalid --secret: required (or --secret-file)")
	}
	p := auth.Protocol(*protocol)
	switch p {
	case auth.ProtoV1, auth.ProtoV2, auth.ProtoToken, auth.ProtoV3, auth.ProtoJWT:
	default:
		return usageError(fmt.Sprintf("invalid --protocol %q: want v1, v2, token, v3 or jwt", *protocol))
	}
	slot, err := auth.SignSlot(s, auth.SignRequest{
		BaseURL:  *baseURL,
		Dir:      *dir,
		Name:     rest[0],
		Size:     *size,
		Type:     ctype.ptr(),
		Protocol: p,
		TTL:      *ttl,
	})
	if err != nil {
		return usageError(err.Error())
	}
	fmt.Fprintln(stdout, slot.PutURL)
	fmt.Fprintln(stdout, slot.GetURL)
	if slot.Authorization != "" {
		fmt.Fprintln(stdout, "Authorization: "+slot.Authorization)
	}
	return nil
}

func errOrEmpty(err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("no secret in the file")
}

// optString is a string flag that remembers whether it was given.
type optString struct {
	v   string
	set bool
}

func (o *optString) String() string { return o.v }
func (o *optString) Set(s string) error {
	o.v, o.set = s, true
	return nil
}
func (o *optString) ptr() *string {
	if !o.set {
		return nil
	}
	return &o.v
}
