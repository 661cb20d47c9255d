package main

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/mqtk/mqtk/internal/ctxio"
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
	b, err := ctxio.Do(ctx, func() ([]byte, error) { return term.ReadPassword(fd) })
	if ctx.Err() != nil {
		_ = term.Restore(fd, saved)
	}
	fmt.Fprintln(a.io.Err)
	return b, err
}
