package reply

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mqtk/mqtk/internal/mqttconn"
)

// The environment variables an --exec command finds the request in.
const (
	EnvTopic          = "MQTK_TOPIC"
	EnvResponseTopic  = "MQTK_RESPONSE_TOPIC"
	EnvCorrelation    = "MQTK_CORRELATION_DATA"     // as sent, when it is text
	EnvCorrelationHex = "MQTK_CORRELATION_DATA_HEX" // always, when there is any
	EnvContentType    = "MQTK_CONTENT_TYPE"
	EnvQoS            = "MQTK_QOS"
	EnvSeq            = "MQTK_SEQ"
	EnvUserProperty   = "MQTK_USER_PROPERTY_" // + the key, upper-cased, other than A-Z 0-9 as _
)

// stderrTail is how much of a command's stderr is kept: enough for a
// useful error message, bounded however much the command writes.
const stderrTail = 64 << 10

// waitDelay bounds the wait for a killed command's pipes: a grandchild
// that keeps stdout open must not hold the worker.
const waitDelay = 2 * time.Second

// exec runs the --exec command for request m with the payload on stdin;
// its stdout is the response.
func (r *runner) exec(ctx context.Context, m *mqttconn.Message, seq int, to string) outcome {
	o := r.o
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, o.Exec[0], o.Exec[1:]...)
	limit := o.MaxOutput
	if limit == 0 {
		limit = DefaultMaxOutput
	}
	stdout := &capped{max: limit}
	stderr := &capped{max: stderrTail, tail: true}
	cmd.Stdin = bytes.NewReader(m.Payload)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Dir = o.Dir
	base := o.Env
	if base == nil {
		base = os.Environ()
	}
	cmd.Env = requestEnv(base, m, seq, to)
	cmd.WaitDelay = waitDelay
	detach(cmd)

	err := cmd.Run()
	out := outcome{payload: stdout.b.Bytes(), stderr: stderr.b.Bytes(), code: -1}
	if cmd.ProcessState != nil {
		out.code = cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case o.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded):
		out.failure = fmt.Sprintf("timed out after %s (command killed)", o.Timeout)
		out.code = -1
	case stdout.over:
		out.failure = fmt.Sprintf("the command wrote more than %d bytes to stdout", limit)
	case errors.As(err, &ee):
		out.failure = ee.Error() // "exit status 3", "signal: killed"
		if last := lastLine(out.stderr); last != "" {
			out.failure += ": " + last
		}
	default:
		out.failure = fmt.Sprintf("run %s: %v", o.Exec[0], err)
	}
	return out
}

// requestEnv is base without any variable of ours it happens to hold (a
// stale MQTK_TOPIC must not pass for the request's), plus the request's.
func requestEnv(base []string, m *mqttconn.Message, seq int, to string) []string {
	env := make([]string, 0, len(base)+8+len(m.UserProperties))
	for _, kv := range base {
		if !ours(kv) {
			env = append(env, kv)
		}
	}
	env = append(env, EnvTopic+"="+m.Topic, EnvResponseTopic+"="+to, fmt.Sprintf("%s=%d", EnvQoS, m.QoS), fmt.Sprintf("%s=%d", EnvSeq, seq))
	if m.CorrelationData != nil {
		env = append(env, EnvCorrelationHex+"="+hex.EncodeToString(m.CorrelationData))
		if envSafe(string(m.CorrelationData)) {
			env = append(env, EnvCorrelation+"="+string(m.CorrelationData))
		}
	}
	if m.ContentType != "" {
		env = append(env, EnvContentType+"="+m.ContentType)
	}
	// A key given more than once has its values joined with a comma, as
	// CGI joins repeated headers; keys that differ only in characters
	// the name cannot hold share one variable the same way.
	var names []string
	values := map[string][]string{}
	for _, p := range m.UserProperties {
		if !envSafe(p.Value) {
			continue
		}
		n := EnvUserProperty + envKey(p.Key)
		if _, ok := values[n]; !ok {
			names = append(names, n)
		}
		values[n] = append(values[n], p.Value)
	}
	for _, n := range names {
		env = append(env, n+"="+strings.Join(values[n], ","))
	}
	return env
}

func ours(kv string) bool {
	name, _, _ := strings.Cut(kv, "=")
	switch name {
	case EnvTopic, EnvResponseTopic, EnvCorrelation, EnvCorrelationHex, EnvContentType, EnvQoS, EnvSeq:
		return true
	}
	return strings.HasPrefix(name, EnvUserProperty)
}

// envSafe reports whether s can be an environment value: text without NUL.
func envSafe(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// envKey makes a user property key a variable name: "content-encoding"
// is CONTENT_ENCODING.
func envKey(k string) string {
	b := []byte(strings.ToUpper(k))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// lastLine is the last non-empty line of b, shortened for a property.
func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[i+1:])
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	return s
}

// capped keeps at most max bytes: the first ones, failing the write
// beyond (stdout, so that a runaway command stops on EPIPE), or with tail
// the last ones, never failing (stderr).
type capped struct {
	b    bytes.Buffer
	max  int
	tail bool
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if c.tail {
		c.b.Write(p)
		if extra := c.b.Len() - c.max; extra > 0 {
			c.b.Next(extra)
			rest := append([]byte(nil), c.b.Bytes()...)
			c.b.Reset()
			c.b.Write(rest)
		}
		return len(p), nil
	}
	if c.b.Len()+len(p) > c.max {
		c.over = true
		return 0, errors.New("response over the size limit")
	}
	return c.b.Write(p)
}
