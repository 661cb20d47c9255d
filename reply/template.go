package reply

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"text/template"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
	"github.com/mqtk/mqtk/internal/tmplfunc"
)

// tmplData is what {{.X}} sees in a -m response template: the fields pub's
// --template offers (Seq counts requests here), plus the request's.
type tmplData struct {
	Seq      int    // 1 for the first request handled, counting up
	Time     string // RFC 3339
	Unix     int64
	UnixNano int64
	Hostname string
	ClientID string

	Topic           string            // the request's topic
	Payload         string            // the request's payload
	ResponseTopic   string            // where the response goes
	CorrelationData string            // as sent; see CorrelationHex for binary
	CorrelationHex  string            // the correlation data in hex
	ContentType     string            // the request's, MQTT 5
	UserProperties  map[string]string // the request's, the last value of a repeated key
}

// parseTemplate parses -m. missingkey=error makes {{.UserProperties.x}}
// fail the request when the request has no property x, rather than
// answer "<no value>"; {{index .UserProperties "x"}} gives "" instead.
func parseTemplate(text string, getenv func(string) string) (*template.Template, error) {
	t, err := template.New("response").Funcs(tmplfunc.Funcs(getenv)).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, clierr.Usagef("-m is not a valid template: %v", err)
	}
	return t, nil
}

func newTmplData(seq int, now time.Time, host, clientID, respTopic string, m *mqttconn.Message) *tmplData {
	d := &tmplData{
		Seq: seq, Time: now.Format(time.RFC3339), Unix: now.Unix(), UnixNano: now.UnixNano(),
		Hostname: host, ClientID: clientID,
		Topic: m.Topic, Payload: string(m.Payload), ResponseTopic: respTopic,
		CorrelationData: string(m.CorrelationData), CorrelationHex: hex.EncodeToString(m.CorrelationData),
		ContentType: m.ContentType, UserProperties: make(map[string]string, len(m.UserProperties)),
	}
	for _, p := range m.UserProperties {
		d.UserProperties[p.Key] = p.Value
	}
	return d
}

func render(t *template.Template, d *tmplData) ([]byte, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("-m template: %w", err)
	}
	return b.Bytes(), nil
}
