package ctxio

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestReadAllAndLine(t *testing.T) {
	ctx := context.Background()
	b, err := ReadAll(ctx, strings.NewReader("a\nb\n"))
	if err != nil || string(b) != "a\nb\n" {
		t.Errorf("ReadAll = %q, %v", b, err)
	}
	b, err = ReadLine(ctx, strings.NewReader("first\nsecond\n"))
	if err != nil || string(b) != "first\n" {
		t.Errorf("ReadLine = %q, %v", b, err)
	}
	b, err = ReadLine(ctx, strings.NewReader("no newline"))
	if !errors.Is(err, io.EOF) || string(b) != "no newline" {
		t.Errorf("ReadLine without newline = %q, %v; want the text and io.EOF", b, err)
	}
}

// A read that would block forever ends when the context does.
func TestCancelEndsBlockedRead(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close() // unblocks the reading goroutine at the end
	for name, read := range map[string]func(context.Context, io.Reader) ([]byte, error){"ReadAll": ReadAll, "ReadLine": ReadLine} {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := read(ctx, pr)
			errc <- err
		}()
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s after cancel: %v, want context.Canceled", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still blocked 10 s after cancel", name)
		}
	}
	// An already cancelled context reads nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ReadAll(ctx, strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAll with a cancelled context: %v", err)
	}
}

// Do hands back f's result, or returns at cancel without waiting for f (a
// key generation that takes seconds; Go's crypto/rsa ignores a custom
// random source, so tlsgen's tests cannot stall the real one).
func TestDo(t *testing.T) {
	if v, err := Do(context.Background(), func() (int, error) { return 7, nil }); v != 7 || err != nil {
		t.Errorf("Do = %d, %v", v, err)
	}
	started, release, finished := make(chan struct{}), make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := Do(ctx, func() (int, error) {
			defer close(finished)
			close(started)
			<-release
			return 0, nil
		})
		errc <- err
	}()
	<-started // cancel while f runs, not before Do calls it
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Do after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Do still waiting 10 s after cancel")
	}
	close(release)
	<-finished
}
