package main

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/term"
)

// askSecret prints label on stderr and reads one line from the terminal f
// without echo.
//
// Ctrl-C ends the prompt at once, with the terminal's echo restored.
// term.ReadPassword alone keeps reading after our handler has taken the
// signal, so the first Ctrl-C seemed to do nothing and the second killed
// the process with echo still off in the user's shell.
func (a *app) askSecret(ctx context.Context, f *os.File, label string) ([]byte, error) {
	// Someone is typing: this command is no longer a quick one.
	a.catchInterrupts()
	fd := int(f.Fd())
	saved, err := term.GetState(fd)
	if err != nil {
		return nil, fmt.Errorf("read the terminal settings: %w", err)
	}
	fmt.Fprint(a.io.Err, label)
	type line struct {
		b   []byte
		err error
	}
	got := make(chan line, 1)
	// On Ctrl-C this goroutine stays blocked in read(2) until the process
	// exits, which follows at once: the prompt's error ends the command.
	go func() {
		b, err := term.ReadPassword(fd)
		got <- line{b, err}
	}()
	select {
	case l := <-got:
		fmt.Fprintln(a.io.Err)
		return l.b, l.err
	case <-ctx.Done():
		_ = term.Restore(fd, saved)
		fmt.Fprintln(a.io.Err)
		return nil, ctx.Err()
	}
}
