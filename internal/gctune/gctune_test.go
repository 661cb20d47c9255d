package gctune

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunFollowsTheLiveHeap(t *testing.T) {
	p := Policy{Small: 1000, High: 400, Normal: 100, Every: time.Millisecond}
	var heap atomic.Uint64
	var mu sync.Mutex
	var got []int
	set := func(v int) int {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 || got[len(got)-1] != v {
			got = append(got, v)
		}
		return 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, p, heap.Load, set) }()

	// wait until the recorded settings end with want, within 10 s
	waitFor := func(want []int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			ok := slices.Equal(got, want)
			mu.Unlock()
			if ok {
				return
			}
			time.Sleep(time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("settings %v, want %v", got, want)
	}
	heap.Store(10)
	waitFor([]int{400})
	heap.Store(2000) // large: back to Go's default
	waitFor([]int{400, 100})
	heap.Store(900) // under Small but above 3/4 of it: stays
	time.Sleep(20 * time.Millisecond)
	waitFor([]int{400, 100})
	heap.Store(700) // well under: high again
	waitFor([]int{400, 100, 400})
	cancel()
	<-done
	waitFor([]int{400, 100, 400, 100}) // restored on the way out
}

func TestLiveHeapReadsTheRuntime(t *testing.T) {
	buf := make([]byte, 8<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	runtime.GC() // makes the live figure current
	if n := LiveHeap(); n < uint64(len(buf)) {
		t.Errorf("live heap %d bytes with an 8 MiB buffer live", n)
	}
	runtime.KeepAlive(buf)
}
