package wsconn

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The stream reads across message boundaries, writes one binary message
// per Write and refuses text messages.
func TestStream(t *testing.T) {
	c := dialServer(t, func(ws *websocket.Conn) {
		// One packet split over two messages, then two in one message.
		_ = ws.WriteMessage(websocket.BinaryMessage, []byte{0x20, 0x02})
		_ = ws.WriteMessage(websocket.BinaryMessage, []byte{0x00, 0x00, 0xD0, 0x00, 0xD0, 0x00})
		// Answer the client's binary message with a text one.
		if typ, b, err := ws.ReadMessage(); err == nil && typ == websocket.BinaryMessage {
			_ = ws.WriteMessage(websocket.TextMessage, b)
		}
	})
	got := make([]byte, 8)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read across messages: %v", err)
	}
	if want := []byte{0x20, 0x02, 0x00, 0x00, 0xD0, 0x00, 0xD0, 0x00}; string(got) != string(want) {
		t.Fatalf("read % x, want % x", got, want)
	}
	if n, err := c.Write([]byte{0xC0, 0x00}); n != 2 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if _, err := c.Read(got); !errors.Is(err, ErrTextFrame) {
		t.Fatalf("read of a text message: %v, want ErrTextFrame", err)
	}
}

// A close from the peer reads as the end of the stream.
func TestCloseIsEOF(t *testing.T) {
	c := dialServer(t, func(*websocket.Conn) {})
	if _, err := c.Read(make([]byte, 4)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the peer's close: %v, want io.EOF", err)
	}
}

// dialServer starts a WebSocket server on 127.0.0.1 whose handler runs
// serve and then closes normally, and returns a Conn dialled to it with
// a 10 s deadline. The server and the Conn end with the test.
func dialServer(t *testing.T, serve func(ws *websocket.Conn)) *Conn {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		serve(ws)
		_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		time.Sleep(100 * time.Millisecond)
	}))
	t.Cleanup(srv.Close)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := New(ws)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}
