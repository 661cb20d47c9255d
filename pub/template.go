package pub

import (
	"bytes"
	"text/template"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/source"
	"github.com/mqtk/mqtk/internal/tmplfunc"
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

func parseTemplates(o *Options) (*templates, error) {
	if !o.Template {
		return nil, nil
	}
	fm := tmplfunc.Funcs(o.Getenv)
	parse := func(what, text string) (*template.Template, error) {
		t, err := template.New(what).Funcs(fm).Option("missingkey=error").Parse(text)
		if err != nil {
			return nil, clierr.Usagef("--template: %s is not a valid template: %v", what, err)
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
	if o.Source == source.Message {
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
		return "", clierr.Usagef("--template: %v", err)
	}
	return b.String(), nil
}

func newTmplData(seq int, now time.Time, host, clientID string) *tmplData {
	return &tmplData{
		Seq: seq, Time: now.Format(time.RFC3339), Unix: now.Unix(), UnixNano: now.UnixNano(),
		Hostname: host, ClientID: clientID,
	}
}
