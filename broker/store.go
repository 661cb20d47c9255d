package broker

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Why bbolt and not one of mochi's storage hooks:
//   - it is pure Go and keeps everything in ONE file under --data, which a user
//     can copy, back up or delete; badger and pebble are LSM trees that leave
//     directories of segment files behind (mochi #369: gigabytes of them) and
//     pull large dependency trees into the binary; redis needs a server;
//   - every read-write transaction is fsynced on commit and bbolt's
//     copy-on-write B+tree never leaves a torn page behind, so a `kill -9`
//     loses at most the last batch that was not yet committed;
//   - mochi's own bolt hook is deprecated upstream and stores clean sessions too,
//     which then resurrect their subscriptions on restart; ours persists only
//     sessions that are meant to outlive their connection.
//
// Writes are queued to one committer goroutine that commits whatever is
// waiting in a single fsynced transaction (group commit). A hook call that
// stores something new (a session, a subscription, a queued message, a
// retained message) waits for its commit: that paces publishers to the disk,
// which keeps a burst from overflowing a subscriber's outbound queue (where
// mochi would drop even QoS 1), and means a `kill -9` loses at most the batch
// being committed. Deletions after a PUBACK/PUBCOMP do not wait: losing one
// in a crash only redelivers a message, which QoS 1 allows, and it keeps the
// subscriber's read loop off the disk.

// storeFile is the name of the database file inside the --data directory.
const storeFile = "mqtk-broker.db"

// Bucket names.
var (
	bucketClients  = []byte("clients")
	bucketSubs     = []byte("subscriptions")
	bucketInflight = []byte("inflight")
	bucketRetained = []byte("retained")
	bucketSys      = []byte("sys")
	keySysInfo     = []byte("info")
)

// errStoreClosed is returned for writes that arrive after Close, e.g. from a
// client goroutine that is still winding down while the server stops.
var errStoreClosed = errors.New("store is closed")

// maxGroupCommit bounds how many writes share one transaction, so one commit
// never holds a huge dirty page set.
const maxGroupCommit = 512

// storeQueue bounds the writes waiting for the committer; when it is full,
// even lazy writers wait instead of growing memory without limit.
const storeQueue = 4096

// storedClient is the client record we keep: mochi's storable client plus the
// time the session went offline, so sessions that expired while the broker was
// down are dropped at start instead of being given a fresh expiry period.
type storedClient struct {
	storage.Client
	Disconnected int64 `json:"disconnected,omitempty"` // unix seconds; 0 = was online
}

// storeOp is one queued write (fn) or a flush barrier (fn nil, done set:
// done receives the result once everything queued before it is committed).
type storeOp struct {
	what string
	fn   func(tx *bolt.Tx) error
	done chan error
}

// storeHook persists retained messages, persistent sessions, their
// subscriptions and their in-flight/queued QoS 1/2 messages.
//
// Concurrency: hook methods are called from many client goroutines at once;
// all writes are funnelled through ops to the single committer goroutine.
// mu guards closed and makes Close wait for senders already past the check.
type storeHook struct {
	mqtt.HookBase
	db  *bolt.DB
	now func() time.Time

	mu        sync.RWMutex
	closed    bool
	ops       chan storeOp
	committed chan struct{} // closed when the committer has exited
	closeOnce sync.Once
	closeErr  error

	// stored holds the ids of sessions in the store, so clean sessions
	// (most connections) never cost a disk write on connect, unsubscribe
	// or disconnect.
	stored sync.Map // client id -> struct{}
}

// newStoreHook opens (creating if needed) the store in dir.
func newStoreHook(dir string) (*storeHook, error) {
	if dir == "" {
		return nil, errors.New("store: no data directory given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, storeFile)
	// A second broker on the same directory would wait forever for bbolt's
	// file lock; fail fast with a message instead.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: it is locked by another running broker; stop it or use another --data directory", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketClients, bucketSubs, bucketInflight, bucketRetained, bucketSys} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("prepare %s: %w", path, err)
	}
	h := &storeHook{
		db:        db,
		now:       time.Now,
		ops:       make(chan storeOp, storeQueue),
		committed: make(chan struct{}),
	}
	go h.commitLoop()
	return h, nil
}

// ID implements mqtt.Hook.
func (h *storeHook) ID() string { return "mqtk-store" }

// Provides implements mqtt.Hook.
func (h *storeHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnWillSent,
		mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnRetainedExpired,
		mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnClientExpired, mqtt.OnSysInfoTick,
		mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.StoredInflightMessages,
		mqtt.StoredRetainedMessages, mqtt.StoredSysInfo:
		return true
	}
	return false
}

// Stop is called by mqtt.Server.Close; it closes the store so that a broker
// whose owner forgets Close still releases the file lock.
func (h *storeHook) Stop() error { return h.Close() }

// Close waits for queued writes to commit and closes the database file.
// It is safe to call more than once and concurrently with hook calls.
func (h *storeHook) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		close(h.ops)
		h.mu.Unlock()
		<-h.committed
		h.closeErr = h.db.Close()
	})
	return h.closeErr
}

func (h *storeHook) commitLoop() {
	defer close(h.committed)
	for op := range h.ops {
		batch := []storeOp{op}
	gather:
		for len(batch) < maxGroupCommit {
			select {
			case next, ok := <-h.ops:
				if !ok {
					break gather
				}
				batch = append(batch, next)
			default:
				break gather
			}
		}
		writes := 0
		for _, o := range batch {
			if o.fn != nil {
				writes++
			}
		}
		if writes == 0 {
			// Only barriers: everything queued before them was committed
			// by earlier batches (the queue is FIFO).
			for _, o := range batch {
				o.done <- nil
			}
			continue
		}
		failed := ""
		err := h.db.Update(func(tx *bolt.Tx) error {
			for _, o := range batch {
				if o.fn == nil {
					continue
				}
				if err := o.fn(tx); err != nil {
					failed = o.what
					return err
				}
			}
			return nil
		})
		if err != nil && h.Log != nil {
			// The whole batch was rolled back; these changes are lost
			// from the disk copy (the broker's memory still has them).
			h.Log.Error("store write failed", "op", failed, "batch", len(batch), "error", err)
		}
		for _, o := range batch {
			if o.done != nil {
				o.done <- err
			}
		}
	}
}

// write runs fn in the next committed (fsynced) transaction and waits for
// it. Writes are applied in the order they were queued.
func (h *storeHook) write(what string, fn func(tx *bolt.Tx) error) {
	done := make(chan error, 1)
	if !h.enqueue(storeOp{what: what, fn: fn, done: done}) {
		return // closed: a client winding down after the server stopped
	}
	<-done // a failure is logged by the committer
}

// writeLazy queues fn for the next transaction without waiting for it.
func (h *storeHook) writeLazy(what string, fn func(tx *bolt.Tx) error) {
	h.enqueue(storeOp{what: what, fn: fn})
}

// flush waits until everything queued so far is on disk.
func (h *storeHook) flush() error {
	done := make(chan error, 1)
	if !h.enqueue(storeOp{what: "flush", done: done}) {
		return errStoreClosed
	}
	return <-done
}

func (h *storeHook) enqueue(op storeOp) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return false
	}
	h.ops <- op
	return true
}

// OnPacketRead holds a QoS 2 PUBREL until the queue is committed, so the
// PUBCOMP mochi sends after it also covers the lazy deletions before it.
func (h *storeHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Pubrel {
		if err := h.flush(); err != nil && !errors.Is(err, errStoreClosed) && h.Log != nil {
			h.Log.Error("store flush failed", "client", cl.ID, "error", err)
		}
	}
	return pk, nil
}

// persistent reports whether cl's session outlives its network connection:
// MQTT 5 with a non-zero session expiry [MQTT-3.1.2-23], or 3.1.1 with clean
// session 0 [MQTT-3.1.2-4]. Clean sessions are never written, so a crash
// cannot resurrect them.
func persistent(cl *mqtt.Client) bool {
	if cl == nil || cl.Net.Inline {
		return false
	}
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

func subKey(client, filter string) []byte {
	return append(append([]byte(client), 0), filter...)
}

func inflightKey(client string, id uint16) []byte {
	k := append([]byte(client), 0, 0, 0)
	binary.BigEndian.PutUint16(k[len(k)-2:], id)
	return k
}

// clientPrefix is the key prefix of everything belonging to client in the
// subscriptions and inflight buckets. The NUL separator cannot occur in a
// client id or topic filter ([MQTT-1.5.4-2]), so prefixes never overlap.
func clientPrefix(client string) []byte { return append([]byte(client), 0) }

func putJSON(tx *bolt.Tx, bucket, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s record: %w", bucket, err)
	}
	return tx.Bucket(bucket).Put(key, b)
}

func deletePrefix(tx *bolt.Tx, bucket, prefix []byte) error {
	c := tx.Bucket(bucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func deleteSession(tx *bolt.Tx, client string) error {
	if err := tx.Bucket(bucketClients).Delete([]byte(client)); err != nil {
		return err
	}
	if err := deletePrefix(tx, bucketSubs, clientPrefix(client)); err != nil {
		return err
	}
	return deletePrefix(tx, bucketInflight, clientPrefix(client))
}

func (h *storeHook) clientRecord(cl *mqtt.Client, disconnected int64) storedClient {
	props := cl.Properties.Props.Copy(false)
	return storedClient{
		Client: storage.Client{
			ID:              cl.ID,
			T:               storage.ClientKey,
			Remote:          cl.Net.Remote,
			Listener:        cl.Net.Listener,
			Username:        cl.Properties.Username,
			Clean:           cl.Properties.Clean,
			ProtocolVersion: cl.Properties.ProtocolVersion,
			Properties: storage.ClientProperties{
				SessionExpiryInterval:     props.SessionExpiryInterval,
				SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
				AuthenticationMethod:      props.AuthenticationMethod,
				AuthenticationData:        props.AuthenticationData,
				RequestProblemInfo:        props.RequestProblemInfo,
				RequestProblemInfoFlag:    props.RequestProblemInfoFlag,
				RequestResponseInfo:       props.RequestResponseInfo,
				ReceiveMaximum:            props.ReceiveMaximum,
				TopicAliasMaximum:         props.TopicAliasMaximum,
				User:                      props.User,
				MaximumPacketSize:         props.MaximumPacketSize,
			},
			Will: storage.ClientWill(cl.Properties.Will),
		},
		Disconnected: disconnected,
	}
}

// OnSessionEstablished records a persistent session, or removes whatever was
// stored under the id when the client started clean [MQTT-3.1.2-4].
func (h *storeHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	if !persistent(cl) {
		h.dropSession(cl.ID)
		return
	}
	h.saveSession(h.clientRecord(cl, 0))
}

func (h *storeHook) saveSession(rec storedClient) {
	h.stored.Store(rec.ID, struct{}{})
	h.write("save session", func(tx *bolt.Tx) error { return putJSON(tx, bucketClients, []byte(rec.ID), rec) })
}

// dropSession deletes a session with its subscriptions and queue, if stored.
func (h *storeHook) dropSession(id string) {
	if _, ok := h.stored.LoadAndDelete(id); !ok {
		return
	}
	h.write("drop session", func(tx *bolt.Tx) error { return deleteSession(tx, id) })
}

// OnDisconnect updates the record with the time the session went offline (a
// v5 DISCONNECT may also have changed its expiry), or deletes it when the
// session ends with the connection.
func (h *storeHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	// A taken-over client shares its id with the live session that replaced
	// it; anything we did here would clobber the new session's record.
	// Clients restored from the store at start-up have no connection and their
	// stored offline time must be kept.
	if cl.IsTakenOver() || cl.Net.Conn == nil || cl.Net.Inline {
		return
	}
	if expire || !persistent(cl) {
		h.dropSession(cl.ID)
		return
	}
	h.saveSession(h.clientRecord(cl, h.now().Unix()))
}

// OnWillSent stores the client without its will, so a restart cannot send it
// a second time [MQTT-3.1.2-10].
func (h *storeHook) OnWillSent(cl *mqtt.Client, _ packets.Packet) {
	if !persistent(cl) || cl.IsTakenOver() {
		return
	}
	var disconnected int64
	if cl.Closed() {
		disconnected = h.now().Unix()
	}
	rec := h.clientRecord(cl, disconnected)
	rec.Will = storage.ClientWill{}
	h.saveSession(rec)
}

// OnClientExpired deletes a session whose expiry interval has passed.
func (h *storeHook) OnClientExpired(cl *mqtt.Client) {
	h.dropSession(cl.ID)
}

// OnSubscribed stores the granted filters of a persistent session; refused
// ones (reason code >= 0x80) are not part of the session.
func (h *storeHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	if !persistent(cl) {
		return
	}
	var subs []storage.Subscription
	for i, f := range pk.Filters {
		if i < len(reasonCodes) && reasonCodes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		subs = append(subs, storage.Subscription{
			T:                 storage.SubscriptionKey,
			ID:                string(subKey(cl.ID, f.Filter)),
			Client:            cl.ID,
			Filter:            f.Filter,
			Identifier:        f.Identifier,
			RetainHandling:    f.RetainHandling,
			Qos:               grantedQos(f.Qos, reasonCodes, i),
			RetainAsPublished: f.RetainAsPublished,
			NoLocal:           f.NoLocal,
		})
	}
	if len(subs) == 0 {
		return
	}
	h.write("save subscriptions", func(tx *bolt.Tx) error {
		for _, s := range subs {
			if err := putJSON(tx, bucketSubs, subKey(s.Client, s.Filter), s); err != nil {
				return err
			}
		}
		return nil
	})
}

// grantedQos is the QoS the broker granted (reason codes 0-2 are the granted
// QoS [MQTT-3.9.3-1]), falling back to the requested one.
func grantedQos(requested byte, codes []byte, i int) byte {
	if i < len(codes) && codes[i] <= 2 {
		return codes[i]
	}
	return requested
}

// OnUnsubscribed removes filters from the stored session.
func (h *storeHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || len(pk.Filters) == 0 {
		return
	}
	if _, ok := h.stored.Load(cl.ID); !ok {
		return // only stored sessions have stored subscriptions
	}
	id := cl.ID
	filters := make([]string, len(pk.Filters))
	for i, f := range pk.Filters {
		filters[i] = f.Filter
	}
	h.write("delete subscriptions", func(tx *bolt.Tx) error {
		for _, f := range filters {
			if err := tx.Bucket(bucketSubs).Delete(subKey(id, f)); err != nil {
				return err
			}
		}
		return nil
	})
}

// OnRetainMessage stores or (for an empty payload [MQTT-3.3.1-6]) deletes the
// retained message of a topic.
func (h *storeHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, _ int64) {
	topic := pk.TopicName
	if len(pk.Payload) == 0 {
		h.write("delete retained", func(tx *bolt.Tx) error { return tx.Bucket(bucketRetained).Delete([]byte(topic)) })
		return
	}
	msg := messageRecord(storage.RetainedKey, topic, "", pk)
	h.write("save retained", func(tx *bolt.Tx) error { return putJSON(tx, bucketRetained, []byte(topic), msg) })
}

// OnRetainedExpired deletes a retained message whose expiry passed.
func (h *storeHook) OnRetainedExpired(topic string) {
	h.write("expire retained", func(tx *bolt.Tx) error { return tx.Bucket(bucketRetained).Delete([]byte(topic)) })
}

// OnQosPublish stores an in-flight or queued QoS 1/2 message of a persistent
// session (mochi queues messages for offline sessions as in-flight ones).
func (h *storeHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if !persistent(cl) {
		return
	}
	msg := messageRecord(storage.InflightKey, fmt.Sprintf("%s_%d", cl.ID, pk.PacketID), cl.ID, pk)
	msg.Sent = sent
	key := inflightKey(cl.ID, pk.PacketID)
	h.write("save inflight", func(tx *bolt.Tx) error { return putJSON(tx, bucketInflight, key, msg) })
}

// OnQosComplete deletes a message whose QoS flow finished.
func (h *storeHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if !persistent(cl) {
		return
	}
	key := inflightKey(cl.ID, pk.PacketID)
	h.writeLazy("delete inflight", func(tx *bolt.Tx) error { return tx.Bucket(bucketInflight).Delete(key) })
}

// OnQosDropped deletes a message that was dropped (expired, or its session
// was discarded).
func (h *storeHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	// On a session takeover mochi copies the in-flight messages to the new
	// client and then "drops" them from the old one, which has the same id:
	// deleting here would lose the queue until it is resent.
	if !persistent(cl) || cl.IsTakenOver() {
		return
	}
	key := inflightKey(cl.ID, pk.PacketID)
	h.writeLazy("drop inflight", func(tx *bolt.Tx) error { return tx.Bucket(bucketInflight).Delete(key) })
}

// OnSysInfoTick keeps the $SYS counters so the retained/subscription gauges
// and (with RestoreSysInfoOnRestart) the totals continue after a restart.
func (h *storeHook) OnSysInfoTick(info *system.Info) {
	rec := storage.SystemInfo{Info: *info.Clone(), T: storage.SysInfoKey, ID: storage.SysInfoKey}
	h.write("save sys info", func(tx *bolt.Tx) error { return putJSON(tx, bucketSys, keySysInfo, rec) })
}

func messageRecord(kind, id, client string, pk packets.Packet) storage.Message {
	props := pk.Properties.Copy(false)
	return storage.Message{
		T:           kind,
		ID:          id,
		Client:      client,
		Origin:      pk.Origin,
		TopicName:   pk.TopicName,
		FixedHeader: pk.FixedHeader,
		Payload:     pk.Payload,
		Created:     pk.Created,
		PacketID:    pk.PacketID,
		Properties: storage.MessageProperties{
			PayloadFormat:          props.PayloadFormat,
			PayloadFormatFlag:      props.PayloadFormatFlag,
			MessageExpiryInterval:  props.MessageExpiryInterval,
			ContentType:            props.ContentType,
			ResponseTopic:          props.ResponseTopic,
			CorrelationData:        props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier,
			User:                   props.User,
		},
	}
}

// liveClients returns the stored sessions that have not expired, deleting the
// ones that did while the broker was down.
func (h *storeHook) liveClients() (map[string]storedClient, error) {
	now := h.now().Unix()
	maxExpiry := int64(0)
	if h.Opts != nil && h.Opts.Capabilities != nil {
		maxExpiry = int64(h.Opts.Capabilities.MaximumSessionExpiryInterval)
	}
	live := map[string]storedClient{}
	var expired []string
	err := h.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketClients).ForEach(func(k, v []byte) error {
			var c storedClient
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("decode client %q: %w", k, err)
			}
			expiry := maxExpiry
			if c.ProtocolVersion == 5 && c.Properties.SessionExpiryIntervalFlag {
				expiry = int64(c.Properties.SessionExpiryInterval)
			}
			if c.Disconnected > 0 && expiry > 0 && c.Disconnected+expiry < now {
				expired = append(expired, c.ID)
				return nil
			}
			live[c.ID] = c
			h.stored.Store(c.ID, struct{}{})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if len(expired) > 0 {
		err = h.db.Update(func(tx *bolt.Tx) error {
			for _, id := range expired {
				h.stored.Delete(id)
				if err := deleteSession(tx, id); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("delete expired sessions: %w", err)
		}
	}
	return live, nil
}

// StoredClients implements mqtt.Hook.
func (h *storeHook) StoredClients() ([]storage.Client, error) {
	live, err := h.liveClients()
	if err != nil {
		return nil, fmt.Errorf("read stored clients: %w", err)
	}
	out := make([]storage.Client, 0, len(live))
	for _, c := range live {
		out = append(out, c.Client)
	}
	return out, nil
}

// StoredSubscriptions implements mqtt.Hook. Subscriptions of sessions that
// are gone are skipped: mochi would otherwise index them with no client.
func (h *storeHook) StoredSubscriptions() ([]storage.Subscription, error) {
	live, err := h.liveClients()
	if err != nil {
		return nil, fmt.Errorf("read stored clients: %w", err)
	}
	var out []storage.Subscription
	err = h.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSubs).ForEach(func(k, v []byte) error {
			var s storage.Subscription
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("decode subscription %q: %w", k, err)
			}
			if _, ok := live[s.Client]; ok {
				out = append(out, s)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read stored subscriptions: %w", err)
	}
	return out, nil
}

// StoredInflightMessages implements mqtt.Hook.
func (h *storeHook) StoredInflightMessages() ([]storage.Message, error) {
	live, err := h.liveClients()
	if err != nil {
		return nil, fmt.Errorf("read stored clients: %w", err)
	}
	var out []storage.Message
	err = h.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInflight).ForEach(func(k, v []byte) error {
			var m storage.Message
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode inflight message %q: %w", k, err)
			}
			if _, ok := live[m.Client]; ok {
				out = append(out, m)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read stored inflight messages: %w", err)
	}
	return out, nil
}

// StoredRetainedMessages implements mqtt.Hook. Messages whose MQTT 5
// message expiry passed while the broker was down are deleted, not restored
// [MQTT-3.3.2-5]: mochi's stored form has no expiry time, so a restored
// message would otherwise never expire.
func (h *storeHook) StoredRetainedMessages() ([]storage.Message, error) {
	now := h.now().Unix()
	var out []storage.Message
	var expired [][]byte
	err := h.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRetained).ForEach(func(k, v []byte) error {
			var m storage.Message
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode retained message %q: %w", k, err)
			}
			if e := int64(m.Properties.MessageExpiryInterval); e > 0 && m.Created > 0 && m.Created+e < now {
				expired = append(expired, append([]byte(nil), k...))
				return nil
			}
			out = append(out, m)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read stored retained messages: %w", err)
	}
	if len(expired) > 0 {
		err = h.db.Update(func(tx *bolt.Tx) error {
			for _, k := range expired {
				if err := tx.Bucket(bucketRetained).Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("delete expired retained messages: %w", err)
		}
	}
	return out, nil
}

// StoredSysInfo implements mqtt.Hook.
func (h *storeHook) StoredSysInfo() (storage.SystemInfo, error) {
	var v storage.SystemInfo
	err := h.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSys).Get(keySysInfo)
		if b == nil {
			return nil
		}
		return json.Unmarshal(b, &v)
	})
	if err != nil {
		return v, fmt.Errorf("read stored sys info: %w", err)
	}
	return v, nil
}
