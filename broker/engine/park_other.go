//go:build !linux

package engine

import (
	"errors"
	"net"
	"syscall"
)

// poller is Linux's alone (epoll); elsewhere a connection keeps its
// goroutine while idle, as it does on TLS and WebSocket listeners.
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.New("parking idle connections needs Linux") }

func (p *poller) park(*conn) bool { return false }
func (p *poller) forget(*conn)    {}
func (p *poller) close()          {}

// tryWrite is never called where connections are not parked (raw is nil).
func tryWrite(syscall.RawConn, []byte) (int, error) { return 0, errors.ErrUnsupported }

// socketOf finds no socket to watch: parking is Linux's alone.
func socketOf(net.Conn) syscall.RawConn { return nil }
