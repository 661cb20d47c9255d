package gctune

import (
	"context"
	"math"
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
	read := func() Memory { return Memory{Live: heap.Load()} }
	noLimit := func(int64) int64 { t.Error("limit set with Headroom 0"); return 0 }
	var settings recorder[int]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, p, read, settings.set, noLimit) }()
	waitFor := func(want []int) { t.Helper(); settings.waitFor(t, "settings", want) }
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

// The soft limit follows the live heap: the memory that is not heap, the
// live heap, and the larger of the live heap and Headroom as room for
// garbage; small changes leave it alone, and it is lifted at the end.
func TestRunLimitsGarbage(t *testing.T) {
	p := Policy{Small: 1 << 30, High: 400, Normal: 100, Every: time.Millisecond, Headroom: 1000}
	var mem atomic.Pointer[Memory]
	mem.Store(&Memory{Live: 100, NonHeap: 50})
	var limits recorder[int64]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, p, func() Memory { return *mem.Load() }, func(int) int { return 0 }, limits.set)
	}()
	waitFor := func(want []int64) { t.Helper(); limits.waitFor(t, "limits", want) }
	waitFor([]int64{50 + 100 + 1000})
	mem.Store(&Memory{Live: 120, NonHeap: 50}) // within a sixteenth: unchanged
	time.Sleep(20 * time.Millisecond)
	waitFor([]int64{1150})
	mem.Store(&Memory{Live: 4000, NonHeap: 200}) // large heap: room as large as the heap
	waitFor([]int64{1150, 200 + 4000 + 4000})
	cancel()
	<-done
	waitFor([]int64{1150, 8200, math.MaxInt64})
}

func TestReadMemoryReadsTheRuntime(t *testing.T) {
	buf := make([]byte, 8<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	runtime.GC() // makes the live figure current
	m := ReadMemory()
	if m.Live < uint64(len(buf)) {
		t.Errorf("live heap %d bytes with an 8 MiB buffer live", m.Live)
	}
	if m.NonHeap == 0 || m.NonHeap > 1<<30 {
		t.Errorf("memory that is not heap: %d bytes", m.NonHeap)
	}
	runtime.KeepAlive(buf)
}

// A broker that allocates fast gets a limit above what it allocates in a
// second, so the limit never makes the collector run back to back.
func TestRunLimitFollowsAllocation(t *testing.T) {
	p := Policy{Small: 1 << 30, High: 400, Normal: 100, Every: 10 * time.Millisecond, Headroom: 1000}
	var allocs atomic.Uint64
	read := func() Memory {
		// Every read finds 10 MiB more allocated: about 1 GiB a second.
		return Memory{Live: 100, NonHeap: 50, Allocs: allocs.Add(10 << 20)}
	}
	var last atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, p, read, func(int) int { return 0 }, func(v int64) int64 {
			if v != math.MaxInt64 {
				last.Store(v)
			}
			return 0
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for last.Load() < 100<<20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if l := last.Load(); l < 100<<20 {
		t.Errorf("limit %d bytes while allocating about 1 GiB a second, want over 100 MiB", l)
	}
}

// recorder keeps the values Run sets, a repeat of the last one dropped,
// for a test to wait on.
type recorder[T comparable] struct {
	mu  sync.Mutex
	got []T
}

func (r *recorder[T]) set(v T) T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 || r.got[len(r.got)-1] != v {
		r.got = append(r.got, v)
	}
	var zero T
	return zero
}

// waitFor waits, at most 10 s, until the values set are want.
func (r *recorder[T]) waitFor(t *testing.T, what string, want []T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		ok := slices.Equal(r.got, want)
		r.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("%s %v, want %v", what, r.got, want)
}
