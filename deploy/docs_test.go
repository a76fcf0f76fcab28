package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// operatorDocs are the documents about running the gateway that go with the
// deployment files.
var operatorDocs = []string{"docs/operations.md", "docs/scaling.md", "docs/troubleshooting.md", "docs/proxy.md"}

// otherToolFlags are flags of other programs that the documents quote inline.
var otherToolFlags = map[string]bool{"health-cmd": true}

var (
	mdLink       = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	inlineCode   = regexp.MustCompile("`([^`\n]+)`")
	inlineFlag   = regexp.MustCompile(`^--([a-z0-9][a-z0-9-]*)`)
	mdHeading    = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	codeFenceRun = regexp.MustCompile("(?s)```.*?```")
)

// anchor is GitHub's anchor of a heading.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func anchors(t *testing.T, file string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range mdHeading.FindAllStringSubmatch(codeFenceRun.ReplaceAllString(string(b), ""), -1) {
		out[anchor(strings.ReplaceAll(m[1], "`", ""))] = true
	}
	return out
}

func TestOperatorDocs(t *testing.T) {
	flags := serveFlags(t)
	for _, doc := range operatorDocs {
		text := readFile(t, doc)
		checkEnvNames(t, doc, text)
		// Links to files of the repository and their headings.
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, frag, _ := strings.Cut(target, "#")
			full := path(doc)
			if file != "" {
				full = filepath.Join(filepath.Dir(path(doc)), filepath.FromSlash(file))
			}
			if _, err := os.Stat(full); err != nil {
				t.Errorf("%s links to %s, which does not exist", doc, target)
				continue
			}
			if frag != "" && !anchors(t, full)[frag] {
				t.Errorf("%s links to %s: no such heading", doc, target)
			}
		}
		// Flags quoted inline are flags of uploadgate serve.
		for _, m := range inlineCode.FindAllStringSubmatch(codeFenceRun.ReplaceAllString(text, ""), -1) {
			if f := inlineFlag.FindStringSubmatch(m[1]); f != nil && !flags[f[1]] && !otherToolFlags[f[1]] {
				t.Errorf("%s: `%s`: --%s is not a flag of uploadgate serve", doc, m[1], f[1])
			}
		}
	}
}

func TestAnchor(t *testing.T) {
	for heading, want := range map[string]string{
		"The same id.key everywhere":                       "the-same-idkey-everywhere",
		"Resuming an interrupted PUT (for client authors)": "resuming-an-interrupted-put-for-client-authors",
		"411, 412": "411-412",
	} {
		if got := anchor(heading); got != want {
			t.Errorf("anchor(%q) = %q, want %q", heading, got, want)
		}
	}
}
