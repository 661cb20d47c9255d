//go:build !linux

package engine

import "errors"

// poller is Linux's alone (epoll); elsewhere a connection keeps its
// goroutine while idle, as it does on TLS and WebSocket listeners.
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.New("parking idle connections needs Linux") }

func (p *poller) park(*conn) bool { return false }
func (p *poller) forget(*conn)    {}
func (p *poller) close()          {}
