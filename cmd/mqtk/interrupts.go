package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// interrupts turns the first Ctrl-C or SIGTERM into the cancellation of the
// command's context; the handler is then removed, so a second signal kills
// a command that is stuck.
//
// The handler is installed on demand rather than at start-up: os/signal
// starts a goroutine locked to its own OS thread (plus the runtime's
// template thread), a measurable part of a one-shot `mqtk pub`
// (BENCHMARKS.md, "pub start-up machinery: does it still pay without
// mochi?", which measures this and newRootCmd's building of one command).
// Commands that run for a while install it as they start (see
// catchInterrupts); the ones that usually end at once (a single publish,
// version) get it from a timer after quickGrace, so anything that lasts —
// a slow broker, a password prompt — still ends cleanly on Ctrl-C,
// and only a signal in the first moments meets the default action, which
// ends the process with the same status 130 a shell reports for us.
type interrupts struct {
	cancel context.CancelFunc
	once   sync.Once
	done   chan struct{}
}

// quickGrace is how long a quick command runs before Ctrl-C is caught.
const quickGrace = 100 * time.Millisecond

// quickStart is the annotation of a command that installs its own signal
// handling late; every other command catches interrupts before it runs.
const quickStart = "mqtk/quick-start"

func newInterrupts(cancel context.CancelFunc) *interrupts {
	return &interrupts{cancel: cancel, done: make(chan struct{})}
}

// catch installs the handler; later calls do nothing.
func (w *interrupts) catch() {
	w.once.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		go func() {
			select {
			case <-ch:
				w.cancel()
			case <-w.done:
			}
			signal.Stop(ch)
		}()
	})
}

// stop removes the handler, or keeps it from ever being installed.
func (w *interrupts) stop() {
	w.once.Do(func() {})
	close(w.done)
}

// catchInterrupts makes Ctrl-C cancel the command's context from now on.
// In-process tests have no handler to install.
func (a *app) catchInterrupts() {
	if a.interrupts != nil {
		a.interrupts.catch()
	}
}

// startsQuick reports whether cmd or a parent is marked quickStart.
func startsQuick(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[quickStart] != "" {
			return true
		}
	}
	return false
}
