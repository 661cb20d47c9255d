// Command mqtk is one binary for MQTT and MQTTS work from a shell: publish,
// subscribe, benchmark, run a local broker and make TLS certificates.
package main

import (
	"context"
	"os"
	"time"

	"github.com/mqtk/mqtk/internal/ui"
)

func main() {
	os.Exit(run())
}

// run executes the command tree with a context that ends on the first
// Ctrl-C or SIGTERM (see interrupts for when the handler goes in).
func run() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newInterrupts(cancel)
	defer w.stop()
	t := time.AfterFunc(quickGrace, w.catch)
	defer t.Stop()
	a := &app{io: ui.System(ui.ColorAuto), getenv: os.Getenv, interrupts: w}
	return executeApp(ctx, a, os.Args[1:])
}
