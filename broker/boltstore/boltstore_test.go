package boltstore

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqtk/mqtk/broker/engine"
	"github.com/mqtk/mqtk/internal/packet"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	st, err := Open(dir, func(err error) { t.Errorf("lazy write failed: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRoundTrip: everything applied comes back from Load after a reopen,
// properties exact, user properties in order, queue in reference order.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir)
	var props packet.Properties
	props.ContentType = "application/json"
	props.CorrelationData = []byte{0, 1, 2}
	props.ResponseTopic = "reply/here"
	props.User = []packet.UserProperty{{Key: "k", Value: "1"}, {Key: "k", Value: "2"}}
	props.MessageExpiry = 60
	props.PayloadFormat = 0
	props.Mark(packet.PropPayloadFormat)
	created := time.Unix(1700000000, 123456789)
	msg := func(payload string) *engine.MessageRecord {
		return &engine.MessageRecord{Message: engine.Message{Topic: "a/b", Payload: []byte(payload), QoS: 1, Props: props,
			Created: created, From: "pub"}, SubIDs: []uint32{3, 9}}
	}
	offline := time.Unix(1700000100, 0)
	err := st.Apply([]engine.Op{
		{Kind: engine.PutSession, Client: "c1", Session: engine.SessionRecord{ID: "c1", Username: "alice", HasUser: true, Version: packet.V5, Expiry: 3600, Offline: offline}},
		{Kind: engine.PutSub, Client: "c1", Sub: engine.SubRecord{Filter: "a/#", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 1, ID: 3}},
		{Kind: engine.PutSub, Client: "c1", Sub: engine.SubRecord{Filter: "$share/g/x", QoS: 1}},
		{Kind: engine.PutMessage, Client: "c1", Ref: 300, Msg: msg("third")},
		{Kind: engine.PutMessage, Client: "c1", Ref: 2, Msg: msg("first")},
		{Kind: engine.PutMessage, Client: "c1", Ref: 256, Msg: msg("second")},
		{Kind: engine.PutRetained, Msg: &engine.MessageRecord{Message: engine.Message{Topic: "r/1", Payload: []byte("kept"), QoS: 2, Retain: true, Created: created}}},
		{Kind: engine.PutRetained, Msg: &engine.MessageRecord{Message: engine.Message{Topic: "r/2", Payload: []byte("gone"), Retain: true, Created: created}}},
		{Kind: engine.DeleteRetained, Msg: &engine.MessageRecord{Message: engine.Message{Topic: "r/2"}}},
		{Kind: engine.PutSession, Client: "c2", Session: engine.SessionRecord{ID: "c2", Version: packet.V311, Expiry: 0xFFFFFFFF}},
		{Kind: engine.PutSub, Client: "c2", Sub: engine.SubRecord{Filter: "z"}},
		{Kind: engine.PutMessage, Client: "c2", Ref: 1, Msg: msg("c2")},
		{Kind: engine.DeleteSession, Client: "c2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	st.Lazy([]engine.Op{{Kind: engine.DeleteSub, Client: "c1", Sub: engine.SubRecord{Filter: "$share/g/x"}}})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = open(t, dir)
	defer st.Close()
	snap, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Sessions) != 1 || snap.Sessions[0] != (engine.SessionRecord{ID: "c1", Username: "alice", HasUser: true, Version: packet.V5, Expiry: 3600, Offline: offline}) {
		t.Errorf("sessions = %+v", snap.Sessions)
	}
	if subs := snap.Subs["c1"]; len(subs) != 1 || subs[0] != (engine.SubRecord{Filter: "a/#", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 1, ID: 3}) {
		t.Errorf("subscriptions = %+v", snap.Subs)
	}
	if len(snap.Subs["c2"]) != 0 || len(snap.Messages["c2"]) != 0 {
		t.Errorf("deleted session left %v %v", snap.Subs["c2"], snap.Messages["c2"])
	}
	msgs := snap.Messages["c1"]
	var order []string
	for _, m := range msgs {
		order = append(order, string(m.Msg.Payload))
	}
	if strings.Join(order, ",") != "first,second,third" {
		t.Fatalf("queue order = %v", order)
	}
	want := msg("first")
	got := msgs[0].Msg
	if !got.Created.Equal(want.Created) || got.From != want.From || got.Topic != want.Topic || got.QoS != want.QoS ||
		!slices.Equal(got.SubIDs, want.SubIDs) || !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("message = %+v, want %+v", got, want)
	}
	if packet.Describe(&packet.Publish{Topic: "t", Properties: got.Props}, packet.V5) !=
		packet.Describe(&packet.Publish{Topic: "t", Properties: want.Props}, packet.V5) {
		t.Errorf("properties changed: %s", packet.Describe(&packet.Publish{Topic: "t", Properties: got.Props}, packet.V5))
	}
	if len(snap.Retained) != 1 || snap.Retained[0].Topic != "r/1" || string(snap.Retained[0].Payload) != "kept" || snap.Retained[0].QoS != 2 {
		t.Errorf("retained = %+v", snap.Retained)
	}
}

// TestDamagedFile: a damaged store is an error naming the file and the way
// out, never a panic, and the file is left as it was.
func TestDamagedFile(t *testing.T) {
	for name, damage := range map[string]func(path string) error{
		"garbage": func(path string) error {
			return os.WriteFile(path, bytes.Repeat([]byte("not a bolt file "), 1024), 0o600)
		},
		"truncated": func(path string) error {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(path, b[:len(b)/3], 0o600)
		},
		"page": func(path string) error {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i := 4096 * 2; i < len(b) && i < 4096*4; i++ {
				b[i] ^= 0x5a
			}
			return os.WriteFile(path, b, 0o600)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			st := open(t, dir)
			for i := 0; i < 50; i++ {
				if err := st.Apply([]engine.Op{{Kind: engine.PutRetained, Msg: &engine.MessageRecord{Message: engine.Message{
					Topic: "t/" + strings.Repeat("x", i), Payload: bytes.Repeat([]byte("p"), 200), Retain: true}}}}); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, File)
			if err := damage(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			st2, err := Open(dir, nil)
			if err == nil {
				// Some damage only shows when records are read.
				_, err = st2.Load()
				_ = st2.Close()
			}
			if err == nil {
				t.Fatal("damaged store opened and loaded without an error")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move") {
				t.Errorf("error %q does not name the file and the way out", err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Error("the damaged file was rewritten")
			}
		})
	}
}

// TestLocked: a second broker on the same directory is told so at once.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	st := open(t, dir)
	defer st.Close()
	if _, err := Open(dir, nil); err == nil || !strings.Contains(err.Error(), "locked by another running broker") {
		t.Fatalf("second open: %v", err)
	}
}
