package pub

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"math/big"
	"text/template"
	"time"

	"github.com/mqtk/mqtk/internal/mqttconn"
)

// tmplData is what {{.X}} sees in a --template.
type tmplData struct {
	Seq      int    // 1 for the first message, counting up with --repeat and -l
	Time     string // RFC 3339
	Unix     int64
	UnixNano int64
	Hostname string
	ClientID string
}

// templates holds the parsed topic, payload and user-property templates.
// A nil field means "use the literal value".
type templates struct {
	topic, payload *template.Template
	props          []*template.Template // values, one per user property
	keys           []*template.Template
}

func funcMap(getenv func(string) string) template.FuncMap {
	return template.FuncMap{
		"uuid": newUUID,
		"randInt": func(a, b int) (int, error) {
			if b < a {
				return 0, fmt.Errorf("randInt %d %d: the second bound must not be below the first", a, b)
			}
			n, err := rand.Int(rand.Reader, big.NewInt(int64(b-a)+1))
			if err != nil {
				return 0, err
			}
			return a + int(n.Int64()), nil
		},
		"randFloat": func(a, b float64) (float64, error) {
			if b < a {
				return 0, fmt.Errorf("randFloat %g %g: the second bound must not be below the first", a, b)
			}
			n, err := rand.Int(rand.Reader, big.NewInt(1<<53))
			if err != nil {
				return 0, err
			}
			return a + (b-a)*float64(n.Int64())/float64(1<<53), nil
		},
		"env": func(k string) string {
			if getenv == nil {
				return ""
			}
			return getenv(k)
		},
	}
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

func parseTemplates(o *Options) (*templates, error) {
	if !o.Template {
		return nil, nil
	}
	fm := funcMap(o.Getenv)
	parse := func(what, text string) (*template.Template, error) {
		t, err := template.New(what).Funcs(fm).Option("missingkey=error").Parse(text)
		if err != nil {
			return nil, mqttconn.Usagef("--template: %s is not a valid template: %v", what, err)
		}
		return t, nil
	}
	ts := &templates{}
	var err error
	if o.Topic != "" {
		if ts.topic, err = parse("topic", o.Topic); err != nil {
			return nil, err
		}
	}
	if o.Source == SourceMessage {
		if ts.payload, err = parse("payload", o.Message); err != nil {
			return nil, err
		}
	}
	for _, p := range o.Props.UserProperties {
		k, err := parse("user property key", p.Key)
		if err != nil {
			return nil, err
		}
		v, err := parse("user property value", p.Value)
		if err != nil {
			return nil, err
		}
		ts.keys, ts.props = append(ts.keys, k), append(ts.props, v)
	}
	return ts, nil
}

func execTemplate(t *template.Template, d *tmplData) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", mqttconn.Usagef("--template: %v", err)
	}
	return b.String(), nil
}

func newTmplData(seq int, now time.Time, host, clientID string) *tmplData {
	return &tmplData{
		Seq: seq, Time: now.Format(time.RFC3339), Unix: now.Unix(), UnixNano: now.UnixNano(),
		Hostname: host, ClientID: clientID,
	}
}
