// Command mqtk is one binary for MQTT and MQTTS work from a shell: publish,
// subscribe, benchmark, run a local broker and make TLS certificates.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mqtk/mqtk/internal/ui"
)

func main() {
	os.Exit(run())
}

// run executes the command tree with a context that ends on the first
// Ctrl-C or SIGTERM; a second one exits at once, for a command that is stuck.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore default handling: the next signal kills the process
	}()
	streams := ui.System(ui.ColorAuto)
	return execute(ctx, streams, os.Args[1:], os.Getenv)
}
