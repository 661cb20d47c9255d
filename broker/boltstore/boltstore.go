// Package boltstore keeps mqtk broker's durable state in one bbolt file:
// the engine's lasting sessions, their subscriptions and QoS 1/2 messages,
// and retained messages. It implements engine.Store.
//
// Why bbolt: it is pure Go and keeps everything in ONE file under --data,
// which a user can copy, back up or delete; every read-write transaction
// is fsynced on commit, and its copy-on-write B+tree never leaves a torn
// page behind, so a kill -9 loses nothing that was committed.
//
// Writes go to one committer goroutine that commits whatever is waiting in
// a single fsynced transaction (group commit): many publishers waiting for
// their copies to be durable share one fsync.
package boltstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/mqtk/mqtk/broker/engine"
	"github.com/mqtk/mqtk/internal/packet"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// File is the database's name inside the data directory.
const File = "mqtk-engine.db"

// schema is written to the meta bucket; a file with another one is
// refused rather than misread.
const schema = "1"

var (
	bucketMeta     = []byte("meta")
	bucketSessions = []byte("sessions")
	bucketSubs     = []byte("subscriptions")
	bucketMsgs     = []byte("messages")
	bucketRetained = []byte("retained")
	keySchema      = []byte("schema")
)

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("store is closed")

// maxBatch bounds how many writes share one transaction, so one commit
// never holds a huge dirty page set; queueLen bounds those waiting, so
// lazy writers wait rather than grow memory without limit.
const (
	maxBatch = 512
	queueLen = 4096
)

// Store is an engine.Store on a bbolt file.
//
// Concurrency: Apply and Lazy are called from many goroutines; every write
// goes through ops to the one committer goroutine. mu guards closed and
// makes Close wait for senders already past the check.
type Store struct {
	db   *bolt.DB
	path string
	snap *engine.Snapshot // what the file held at Open, for Load

	mu     sync.RWMutex
	closed bool
	ops    chan batch
	done   chan struct{} // closed when the committer has exited
	once   sync.Once
	errs   func(error) // told about failed lazy writes
}

type batch struct {
	ops  []engine.Op
	done chan error // nil for lazy writes
}

// Open opens (creating if needed) the store in dir. A damaged file is
// reported with its path and what to do, and is never rewritten. onLazyErr
// (may be nil) hears about lazy writes that failed.
func Open(dir string, onLazyErr func(error)) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, File)
	db, snap, err := openChecked(path)
	if err != nil {
		return nil, err
	}
	st := &Store{db: db, path: path, snap: snap, ops: make(chan batch, queueLen), done: make(chan struct{}), errs: onLazyErr}
	if st.errs == nil {
		st.errs = func(error) {}
	}
	go st.commit()
	return st, nil
}

// openChecked opens the bbolt file read-only first and reads every
// record, so a damaged file is found before anything writes to it; then it
// opens it for writing, and creates the buckets only in a new file.
//
// Damage must never crash the broker: bbolt panics on some of it, and on
// a page id beyond the file it reads outside its mapping, a fault that
// SetPanicOnFault turns into a panic on this goroutine, which is
// recovered like the others.
func openChecked(path string) (db *bolt.DB, snap *engine.Snapshot, err error) {
	damaged := func(cause any) error {
		return fmt.Errorf("the store %s is damaged (%v): move it aside to start with an empty store, "+
			"or restore it from a backup", path, cause)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var ro *bolt.DB
	defer func() {
		if r := recover(); r != nil {
			if ro != nil {
				_ = ro.Close()
			}
			if db != nil {
				_ = db.Close()
			}
			db, snap, err = nil, nil, damaged(r)
		}
	}()
	snap = emptySnapshot()
	complete := false
	if _, statErr := os.Stat(path); statErr == nil {
		if err := checkSize(path); err != nil {
			return nil, nil, damaged(err)
		}
		ro, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
		if err != nil {
			if errors.Is(err, bolterrors.ErrTimeout) {
				return nil, nil, fmt.Errorf("open %s: it is locked by another running broker; stop it or use another --data directory", path)
			}
			return nil, nil, damaged(err)
		}
		err = ro.View(func(tx *bolt.Tx) error {
			complete = true
			for _, b := range [][]byte{bucketMeta, bucketSessions, bucketSubs, bucketMsgs, bucketRetained} {
				if tx.Bucket(b) == nil {
					complete = false
				}
			}
			if m := tx.Bucket(bucketMeta); m != nil {
				v := m.Get(keySchema)
				if v != nil && string(v) != schema {
					return fmt.Errorf("it has schema %q, this mqtk reads %q", v, schema)
				}
				complete = complete && v != nil
			}
			if !complete {
				// Walk whatever there is, for damage; a file this
				// store wrote always has every bucket.
				return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
					return b.ForEach(func(k, v []byte) error { return nil })
				})
			}
			// Decode every record now, on this goroutine, before
			// anything is written.
			var lerr error
			snap, lerr = load(tx)
			return lerr
		})
		cerr := ro.Close()
		ro = nil
		if err != nil {
			return nil, nil, damaged(err)
		}
		if cerr != nil {
			return nil, nil, fmt.Errorf("open %s: %w", path, cerr)
		}
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, nil, fmt.Errorf("open %s: it is locked by another running broker; stop it or use another --data directory", path)
		}
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	if complete {
		return db, snap, nil
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketSessions, bucketSubs, bucketMsgs, bucketRetained} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, []byte(schema))
	})
	if err != nil {
		_ = db.Close()
		return nil, nil, fmt.Errorf("prepare %s: %w", path, err)
	}
	return db, snap, nil
}

func emptySnapshot() *engine.Snapshot {
	return &engine.Snapshot{Subs: map[string][]engine.SubRecord{}, Messages: map[string][]engine.StoredMessage{}}
}

// checkSize compares the file's length with the length its meta pages
// claim. bbolt maps the claimed length into memory, and touching the part
// a truncated file lacks is a SIGBUS; this check says plainly that the
// file was cut short before bbolt gets that far. The layout read here is bbolt's
// file format (meta page: 16-byte page header, then magic, version, page
// size, flags, root bucket (16 bytes), freelist, high-water page id, txid),
// little-endian on every platform Go's bbolt supports.
func checkSize(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	const magic = 0xED0CDAED
	head := make([]byte, 64<<10)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	var claimed uint64
	found := false
	meta := func(off int) {
		if off+72 > len(head) {
			return
		}
		m := head[off+16:]
		if binary.LittleEndian.Uint32(m) != magic {
			return
		}
		pageSize := uint64(binary.LittleEndian.Uint32(m[8:]))
		pgid := binary.LittleEndian.Uint64(m[40:])
		found = true
		claimed = max(claimed, pgid*pageSize)
	}
	meta(0)
	if len(head) >= 24 {
		if ps := int(binary.LittleEndian.Uint32(head[24:])); ps > 0 && ps <= 64<<10 {
			meta(ps)
		}
	}
	if !found {
		return errors.New("not a bbolt file: no valid meta page")
	}
	if uint64(fi.Size()) < claimed {
		return fmt.Errorf("the file is %d bytes but its pages reach %d: it was cut short", fi.Size(), claimed)
	}
	return nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Apply implements engine.Store: it returns once ops are committed.
func (s *Store) Apply(ops []engine.Op) error {
	done := make(chan error, 1)
	if !s.enqueue(batch{ops: ops, done: done}) {
		return ErrClosed
	}
	return <-done
}

// Lazy implements engine.Store.
func (s *Store) Lazy(ops []engine.Op) { s.enqueue(batch{ops: ops}) }

func (s *Store) enqueue(b batch) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	s.ops <- b
	return true
}

// Close commits what is queued and closes the file.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.ops)
		s.mu.Unlock()
		<-s.done
		err = s.db.Close()
	})
	return err
}

// commit is the committer goroutine.
func (s *Store) commit() {
	defer close(s.done)
	for first := range s.ops {
		group := []batch{first}
		n := len(first.ops)
	gather:
		for n < maxBatch {
			select {
			case b, ok := <-s.ops:
				if !ok {
					break gather
				}
				group = append(group, b)
				n += len(b.ops)
			default:
				break gather
			}
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
			for _, b := range group {
				for _, op := range b.ops {
					if err := apply(tx, op); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil && !strings.Contains(err.Error(), s.path) {
			err = fmt.Errorf("write %s: %w", s.path, err) // the file's own errors name it already
		}
		lazyFailed := false
		for _, b := range group {
			if b.done != nil {
				b.done <- err
			} else if err != nil {
				lazyFailed = true
			}
		}
		if lazyFailed {
			s.errs(err)
		}
	}
}

func subKey(client, filter string) []byte {
	return append(append([]byte(client), 0), filter...)
}

func msgKey(client string, ref uint64) []byte {
	k := append([]byte(client), 0)
	return binary.BigEndian.AppendUint64(k, ref)
}

func prefix(client string) []byte { return append([]byte(client), 0) }

func deletePrefix(b *bolt.Bucket, p []byte) error {
	c := b.Cursor()
	var keys [][]byte
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func apply(tx *bolt.Tx, op engine.Op) error {
	switch op.Kind {
	case engine.PutSession:
		v, err := json.Marshal(sessionJSON(op.Session))
		if err != nil {
			return err
		}
		return tx.Bucket(bucketSessions).Put([]byte(op.Client), v)
	case engine.DeleteSession:
		if err := tx.Bucket(bucketSessions).Delete([]byte(op.Client)); err != nil {
			return err
		}
		if err := deletePrefix(tx.Bucket(bucketSubs), prefix(op.Client)); err != nil {
			return err
		}
		return deletePrefix(tx.Bucket(bucketMsgs), prefix(op.Client))
	case engine.PutSub:
		v, err := json.Marshal(op.Sub)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketSubs).Put(subKey(op.Client, op.Sub.Filter), v)
	case engine.DeleteSub:
		return tx.Bucket(bucketSubs).Delete(subKey(op.Client, op.Sub.Filter))
	case engine.PutMessage:
		v, err := encodeMessage(op.Msg)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketMsgs).Put(msgKey(op.Client, op.Ref), v)
	case engine.DeleteMessage:
		return tx.Bucket(bucketMsgs).Delete(msgKey(op.Client, op.Ref))
	case engine.PutRetained:
		v, err := encodeMessage(op.Msg)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketRetained).Put([]byte(op.Msg.Topic), v)
	case engine.DeleteRetained:
		return tx.Bucket(bucketRetained).Delete([]byte(op.Msg.Topic))
	}
	return fmt.Errorf("unknown store operation %d", op.Kind)
}

// storedSession is a session record as JSON: readable with bbolt's own
// tools when something needs looking into.
type storedSession struct {
	ID       string `json:"id"`
	Username string `json:"username,omitempty"`
	HasUser  bool   `json:"has_user,omitempty"`
	Version  byte   `json:"version"`
	Expiry   uint32 `json:"expiry"`
	Offline  int64  `json:"offline,omitempty"` // unix nanoseconds; 0 while connected
}

func sessionJSON(r engine.SessionRecord) storedSession {
	s := storedSession{ID: r.ID, Username: r.Username, HasUser: r.HasUser, Version: byte(r.Version), Expiry: r.Expiry}
	if !r.Offline.IsZero() {
		s.Offline = r.Offline.UnixNano()
	}
	return s
}

// encodeMessage stores a message as its creation time, publisher and an
// MQTT 5 PUBLISH packet: the codec keeps every property exactly, user
// properties in order included.
func encodeMessage(m *engine.MessageRecord) ([]byte, error) {
	b := binary.BigEndian.AppendUint64(nil, uint64(m.Created.UnixNano()))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.From)))
	b = append(b, m.From...)
	p := packet.Publish{Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Properties: m.Props, Payload: m.Payload}
	if p.QoS > 0 {
		p.PacketID = 1 // required by the encoder, meaningless here
	}
	p.Properties.SubscriptionIDs = m.SubIDs
	return p.Append(b, packet.V5)
}

func decodeMessage(v []byte) (*engine.MessageRecord, error) {
	if len(v) < 10 {
		return nil, errors.New("message record too short")
	}
	created := int64(binary.BigEndian.Uint64(v))
	n := int(binary.BigEndian.Uint16(v[8:]))
	if len(v) < 10+n {
		return nil, errors.New("message record cut short")
	}
	from := string(v[10 : 10+n])
	rd := packet.NewReader(bytes.NewReader(v[10+n:]), 0)
	p, err := rd.ReadPacket(packet.V5)
	if err != nil {
		return nil, err
	}
	pub, ok := p.(*packet.Publish)
	if !ok {
		return nil, fmt.Errorf("message record holds a %s", p.Type())
	}
	m := &engine.MessageRecord{Message: engine.Message{Topic: pub.Topic, Payload: pub.Payload, QoS: pub.QoS, Retain: pub.Retain,
		Props: pub.Properties, Created: time.Unix(0, created), From: from}, SubIDs: pub.Properties.SubscriptionIDs}
	m.Props.Delete(packet.PropSubscriptionID)
	return m, nil
}

// Load returns what the file held when it was opened, for
// engine.Server.Restore. Open read and decoded every record then, before
// anything was written, and refused a file with one it could not read: a
// broker that quietly dropped part of its state would be worse.
func (s *Store) Load() (*engine.Snapshot, error) { return s.snap, nil }

// load reads every record of a complete store.
func load(tx *bolt.Tx) (*engine.Snapshot, error) {
	snap := emptySnapshot()
	err := func() error {
		err := tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			var r storedSession
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("session %q: %w", k, err)
			}
			rec := engine.SessionRecord{ID: r.ID, Username: r.Username, HasUser: r.HasUser,
				Version: packet.Version(r.Version), Expiry: r.Expiry}
			if r.Offline != 0 {
				rec.Offline = time.Unix(0, r.Offline)
			}
			snap.Sessions = append(snap.Sessions, rec)
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketSubs).ForEach(func(k, v []byte) error {
			client, _, ok := bytes.Cut(k, []byte{0})
			if !ok {
				return fmt.Errorf("subscription key %q", k)
			}
			var r engine.SubRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("subscription %q: %w", k, err)
			}
			snap.Subs[string(client)] = append(snap.Subs[string(client)], r)
			return nil
		})
		if err != nil {
			return err
		}
		// Keys sort by client then big-endian reference: the queue order.
		err = tx.Bucket(bucketMsgs).ForEach(func(k, v []byte) error {
			i := bytes.IndexByte(k, 0)
			if i < 0 || len(k) != i+9 {
				return fmt.Errorf("message key %q", k)
			}
			m, err := decodeMessage(bytes.Clone(v))
			if err != nil {
				return fmt.Errorf("message %q: %w", k, err)
			}
			client := string(k[:i])
			snap.Messages[client] = append(snap.Messages[client], engine.StoredMessage{Ref: binary.BigEndian.Uint64(k[i+1:]), Msg: m})
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketRetained).ForEach(func(k, v []byte) error {
			m, err := decodeMessage(bytes.Clone(v))
			if err != nil {
				return fmt.Errorf("retained message %q: %w", k, err)
			}
			snap.Retained = append(snap.Retained, m)
			return nil
		})
	}()
	if err != nil {
		return nil, err
	}
	return snap, nil
}
