// Package ctxio reads from streams that may block for as long as a person
// or a pipe likes (stdin), in a way that a cancelled context ends at once.
//
// A read(2) on a terminal or pipe cannot be interrupted from Go, so after
// Ctrl-C the reading goroutine stays blocked until the process exits, which
// for mqtk follows immediately. Without this, the first Ctrl-C during
// `mqtk pub -s` typed at a terminal did nothing visible.
package ctxio

import (
	"bufio"
	"context"
	"io"
)

type result struct {
	b   []byte
	err error
}

// ReadAll reads r to EOF, or returns ctx.Err() as soon as ctx ends.
func ReadAll(ctx context.Context, r io.Reader) ([]byte, error) {
	return run(ctx, func() ([]byte, error) { return io.ReadAll(r) })
}

// ReadLine reads up to and including the first newline of r (or to EOF),
// or returns ctx.Err() as soon as ctx ends. It reads through a buffer, so
// bytes after the line may be consumed: use it for the only read of r.
func ReadLine(ctx context.Context, r io.Reader) ([]byte, error) {
	return run(ctx, func() ([]byte, error) { return bufio.NewReader(r).ReadBytes('\n') })
}

func run(ctx context.Context, read func() ([]byte, error)) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	done := make(chan result, 1)
	go func() {
		b, err := read()
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
