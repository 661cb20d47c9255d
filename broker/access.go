package broker

import (
	"crypto/subtle"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/mqtk/mqtk/broker/engine"
	"github.com/mqtk/mqtk/internal/packet"
)

// authState is what Reload swaps atomically.
type authState struct {
	users map[string]passwdEntry // nil: no password file
	acl   *aclRules              // nil: no ACL file, everything allowed
	// dummy is verified for a user name the file lacks: an entry with the
	// same scheme and cost as the file's own, so that how long a login
	// takes does not tell which user names exist.
	dummy passwdEntry
}

// access is the broker's engine.Hooks: the password file, client
// certificates and the ACL, in mosquitto's formats.
type access struct {
	b     *Broker
	opts  Options
	state atomic.Pointer[authState]
}

func newAccess(b *Broker, o Options) (*access, error) {
	a := &access{b: b, opts: o}
	if err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *access) reload() error {
	st := &authState{}
	if a.opts.PasswordFile != "" {
		users, err := loadPasswdFile(a.opts.PasswordFile)
		if err != nil {
			return err
		}
		st.users = users
		st.dummy = dummyEntry(users)
	}
	if a.opts.ACLFile != "" {
		data, err := os.ReadFile(a.opts.ACLFile)
		if err != nil {
			return fmt.Errorf("read acl file: %w", err)
		}
		rules, err := parseACL(string(data))
		if err != nil {
			return fmt.Errorf("acl file %s: %w", a.opts.ACLFile, err)
		}
		st.acl = rules
	}
	a.state.Store(st)
	return nil
}

// dummyEntry returns an entry shaped like the file's most common one (the
// same scheme, iteration count and sizes), which no password matches.
func dummyEntry(users map[string]passwdEntry) passwdEntry {
	type shape struct {
		kind       byte
		iterations int
		salt, hash int
	}
	count := map[shape]int{}
	best, most := shape{kind: '7', iterations: PasswdIterations, salt: passwdSaltLen, hash: 64}, 0
	for _, e := range users {
		s := shape{e.kind, e.iterations, len(e.salt), len(e.hash)}
		count[s]++
		if count[s] > most {
			best, most = s, count[s]
		}
	}
	return passwdEntry{kind: best.kind, iterations: best.iterations, salt: make([]byte, best.salt), hash: make([]byte, best.hash)}
}

// user is the name the ACL and the password file know a client by: with
// --cert-as-username, the verified certificate's common name
// (mosquitto's use_identity_as_username).
func (a *access) user(c *engine.Client) (string, bool) {
	if a.opts.CertAsUsername && c.CertCN != "" {
		return c.CertCN, true
	}
	return c.Username, c.HasUser
}

// Authenticate implements engine.Hooks.
func (a *access) Authenticate(c *engine.Client, password []byte, hasPassword bool) packet.ReasonCode {
	st := a.state.Load()
	user, hasUser := a.user(c)
	ok, why := true, ""
	switch {
	case a.opts.CertAsUsername && c.CertCN != "":
		// The TLS layer verified the certificate against --tls-ca.
	case st.users == nil:
		// No password file: every client that reached us may connect (the
		// listener exposure check made sure that is intended).
	case !hasUser && !hasPassword:
		ok, why = a.opts.AllowAnonymous, "anonymous clients not allowed (connect with -u USER -P PASSWORD)"
	default:
		e, found := st.users[user]
		if !found {
			e = st.dummy
		}
		// Always one verification of the same cost, and the outcome
		// combined without a branch on which part failed; only the log
		// line, written after, tells the operator which it was.
		match := e.verify(password)
		if subtle.ConstantTimeByteEq(boolByte(found), 1)&subtle.ConstantTimeByteEq(boolByte(match), 1) != 1 {
			ok, why = false, "wrong password"
			if !found {
				why = "unknown user"
			}
		}
	}
	if ok {
		if a.opts.CertAsUsername && c.CertCN != "" {
			c.Username, c.HasUser = c.CertCN, true
		}
		return packet.Success
	}
	a.b.log.warn("login failed", "remote", c.Remote, "client", c.ID, "user", user, "reason", why)
	a.b.authFailures.Add(1)
	// Slow down password guessing; only this connection waits.
	time.Sleep(a.b.limits.AuthFailDelay)
	if !hasUser && !hasPassword {
		return packet.NotAuthorized
	}
	return packet.BadUserNameOrPassword
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func (a *access) allowed(c *engine.Client, name string, write bool) bool {
	if !a.b.limits.topicAllowed(name) {
		return false
	}
	st := a.state.Load()
	if st.acl == nil {
		return true
	}
	user, hasUser := a.user(c)
	return st.acl.allowed(user, !hasUser || user == "", c.ID, name, write)
}

// MayPublish implements engine.Hooks; the engine asks it for every
// PUBLISH and for a will at CONNECT.
func (a *access) MayPublish(c *engine.Client, topic string, _ bool) bool {
	return a.allowed(c, topic, true)
}

// MaySubscribe implements engine.Hooks. The filter comes without any
// $share/GROUP/ prefix, so a user who may read public/# may also share it.
func (a *access) MaySubscribe(c *engine.Client, filter string) bool {
	return a.allowed(c, filter, false)
}

// MayRead implements engine.Hooks: asked at each delivery, so a reloaded
// ACL applies to what is already queued, and a session resumed by its own
// user never hands over another user's messages.
func (a *access) MayRead(c *engine.Client, topic string) bool {
	return a.allowed(c, topic, false)
}
