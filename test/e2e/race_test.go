//go:build race

package e2e

// With -race the server binary is built with the race detector too, and a
// reported data race fails the test that ran the server.
func init() { raceEnabled = true }
