package mqttconn

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// Every byte arrives, in order, and Close sends what was still pending.
func TestCoalescerKeepsOrderAndFlushesOnClose(t *testing.T) {
	client, server := tcpPair(t)
	w := newWatchConn(client, V5, nil)
	w.out = newCoalescer(client)
	var want bytes.Buffer
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	for i := range 20000 {
		// A whole MQTT packet each: PINGREQ-sized header plus a payload.
		p := fmt.Appendf(nil, "%06d", i)
		pk := append([]byte{0x30, byte(len(p))}, p...)
		want.Write(pk)
		if _, err := w.Write(pk); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, want.Bytes()) {
			t.Fatalf("received %d bytes, want %d, or in another order", len(b), want.Len())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the peer never saw the end of the stream")
	}
}

// A failed write surfaces on a later Write instead of being lost.
func TestCoalescerReportsWriteErrors(t *testing.T) {
	client, server := tcpPair(t)
	server.Close()
	w := newCoalescer(client)
	defer w.Close()
	client.Close() // every write from now on fails
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := w.Write([]byte{0xC0, 0x00}); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a closed connection never failed")
		}
		time.Sleep(time.Millisecond)
	}
}

// Close returns when the peer stopped reading with data still pending.
func TestCoalescerCloseDoesNotHangOnAStalledPeer(t *testing.T) {
	client, _ := tcpPair(t) // the server side never reads
	w := newWatchConn(client, V5, nil)
	w.out = newCoalescer(client)
	chunk := append([]byte{0x30, 0x7f}, bytes.Repeat([]byte("x"), 127)...)
	// Fill the socket buffers and the coalescer's bound; stop as soon as
	// Write blocks, from another goroutine.
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for i := 0; i < 1<<20; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	closed := make(chan struct{})
	go func() { w.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(closeFlushTimeout + 10*time.Second):
		t.Fatal("Close hung on a peer that does not read")
	}
	select {
	case <-writing:
	case <-time.After(10 * time.Second):
		t.Fatal("a Write blocked on the full coalescer stayed blocked after Close")
	}
}
