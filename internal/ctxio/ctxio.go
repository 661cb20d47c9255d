// Package ctxio runs work that may block for as long as a person, a pipe
// or a slow computation likes (stdin, a password prompt, an RSA-4096 key)
// so that a cancelled context ends the wait at once.
//
// A read(2) on a terminal or pipe, or a key generation, cannot be
// interrupted from Go, so after Ctrl-C the goroutine doing it carries on
// until it finishes or the process exits, which for mqtk follows at once;
// its result is dropped. Without this, the first Ctrl-C during `mqtk pub
// -s` typed at a terminal did nothing visible.
package ctxio

import (
	"bufio"
	"context"
	"io"
)

// Do runs f and returns its result, or ctx.Err() as soon as ctx ends.
// f must not leave anything half done when its result is dropped: compute
// or read, and write only after Do returns.
func Do[T any](ctx context.Context, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// ReadAll reads r to EOF, or returns ctx.Err() as soon as ctx ends.
func ReadAll(ctx context.Context, r io.Reader) ([]byte, error) {
	return Do(ctx, func() ([]byte, error) { return io.ReadAll(r) })
}

// ReadLine reads up to and including the first newline of r (or to EOF),
// or returns ctx.Err() as soon as ctx ends. It reads through a buffer, so
// bytes after the line may be consumed: use it for the only read of r.
func ReadLine(ctx context.Context, r io.Reader) ([]byte, error) {
	return Do(ctx, func() ([]byte, error) { return bufio.NewReader(r).ReadBytes('\n') })
}
