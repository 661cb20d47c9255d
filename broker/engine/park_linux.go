//go:build linux

package engine

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller watches the sockets of parked connections with one epoll
// instance of its own, beside the Go runtime's. A connection that has
// read nothing for Config.ParkAfter lets its goroutine end; when its
// socket becomes readable (or its keep alive runs out, or it is closed)
// a new goroutine picks it up where the old one stopped. Ten thousand
// idle connections then hold ten thousand small structs, not ten thousand
// goroutine stacks: the stack was most of what an idle connection cost
// (BENCHMARKS.md, "Where an idle connection's memory goes").
//
// Each socket is registered level-triggered and one-shot: readable bytes
// that arrived before the registration are reported at once, and a report
// disarms the socket until the next park, so a busy connection costs the
// poller nothing.
type poller struct {
	epfd   int
	stopFD int // an eventfd that ends the wait loop

	mu     sync.Mutex
	parked map[int32]*conn // by socket; an entry may outlive the park (see forget)
	done   chan struct{}
}

// socketOf returns the socket under nc if the engine may park nc.
func socketOf(nc net.Conn) syscall.RawConn {
	if u, ok := nc.(Unbuffered); ok {
		nc = u.Unbuffered()
	}
	var sc syscall.Conn
	switch t := nc.(type) {
	case *net.TCPConn:
		sc = t
	case *net.UnixConn:
		sc = t
	default:
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	stopFD, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(stopFD)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, stopFD, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(stopFD)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	p := &poller{epfd: epfd, stopFD: stopFD, parked: map[int32]*conn{}, done: make(chan struct{})}
	go p.loop()
	return p, nil
}

// loop wakes the connections whose sockets are reported.
func (p *poller) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue // a signal (the runtime's preemption among them)
			}
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(p.stopFD) {
				return
			}
			p.mu.Lock()
			c := p.parked[ev.Fd]
			p.mu.Unlock()
			if c != nil {
				// A report for a connection that is running (woken by its
				// timer, or a stale report) changes nothing: wake only
				// resumes a parked one.
				c.wake()
			}
		}
	}
}

// park arms c's socket. It reports false if the socket cannot be watched,
// and the caller goes on reading in its goroutine.
func (p *poller) park(c *conn) bool {
	var err error
	p.mu.Lock()
	p.parked[c.fd] = c
	p.mu.Unlock()
	cerr := c.raw.Control(func(fd uintptr) {
		// Inside Control the descriptor cannot be closed under us, so the
		// registration is for c's socket and no other.
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
		if errors.Is(err, unix.ENOENT) {
			err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	return cerr == nil && err == nil
}

// forget drops c when its connection has ended. Closing the socket has
// already removed it from the epoll set; the descriptor's number may now
// belong to a new connection, whose entry is left alone.
func (p *poller) forget(c *conn) {
	p.mu.Lock()
	if p.parked[c.fd] == c {
		delete(p.parked, c.fd)
	}
	p.mu.Unlock()
}

// close ends the wait loop and releases the epoll instance.
func (p *poller) close() {
	var one [8]byte
	one[0] = 1 // eventfd counters are host-endian; any non-zero value wakes
	_, _ = unix.Write(p.stopFD, one[:])
	<-p.done
	_ = unix.Close(p.epfd)
	_ = unix.Close(p.stopFD)
}

// tryWrite writes what the socket takes without waiting: all of b, or
// less when its send buffer is full (no error then).
func tryWrite(raw syscall.RawConn, b []byte) (int, error) {
	n := 0
	var err error
	werr := raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			k, e := unix.Write(int(fd), b[n:])
			if k > 0 {
				n += k
			}
			switch {
			case e == nil && k <= 0:
				return true // nothing taken and no error: try again later
			case e == nil:
			case errors.Is(e, unix.EINTR):
			case errors.Is(e, unix.EAGAIN):
				return true
			default:
				err = e
				return true
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return n, err
}
