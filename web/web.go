// Package web holds the demo pages of `uploadgate serve --demo-ui` and the
// browser libraries they use (tus-js-client and Uppy, with their licences),
// embedded in the binary so that nothing is loaded from a CDN.
package web

import (
	"embed"
	"io/fs"
)

//go:embed *.html *.js *.css vendor
var files embed.FS

// Files returns the demo pages and their assets, rooted at the demo's base path.
func Files() fs.FS { return files }
