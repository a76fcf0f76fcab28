package main

import (
	"flag"
	"os"
	"regexp"
	"testing"
)

// The configuration reference documents every flag of `uploadgate serve`, and
// nothing that is not one.
func TestConfigurationReferenceMatchesFlags(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	var c serveConfig
	fs := newServeFlags(&c)
	fs.VisitAll(func(f *flag.Flag) {
		if !documented[f.Name] {
			t.Errorf("--%s is not in the table of docs/configuration.md", f.Name)
		}
		delete(documented, f.Name)
	})
	for name := range documented {
		t.Errorf("docs/configuration.md documents --%s, which uploadgate serve does not have", name)
	}
}
