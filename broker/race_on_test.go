//go:build race

package broker

// The race detector allows 8128 live goroutines; each connection costs the
// broker two, so tests that open thousands of connections scale down.
const raceEnabled = true
