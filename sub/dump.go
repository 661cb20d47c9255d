package sub

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
)

// dumper writes --dump DIR: one file per message holding the raw payload,
// and beside it NAME.json with the message's metadata (the Record without
// the payload, plus the payload file's name and size).
type dumper struct {
	dir string
	seq int
}

func newDumper(dir string) (*dumper, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &clierr.Error{Kind: clierr.KindUsage, Op: "--dump " + dir, Err: err}
	}
	return &dumper{dir: dir}, nil
}

// dumpName builds a file name that sorts by arrival and still says which
// topic it came from: 20261125T060142.057435123Z-000001-sensors_room1_temp.
func dumpName(t time.Time, seq int, topic string) string {
	var b strings.Builder
	for _, c := range topic {
		switch {
		case c == '/':
			b.WriteByte('_')
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.':
			b.WriteRune(c)
		default:
			fmt.Fprintf(&b, "%%%02X", string(c))
		}
	}
	name := b.String()
	if len(name) > 150 {
		name = name[:150]
	}
	return fmt.Sprintf("%s-%06d-%s", t.UTC().Format("20060102T150405.000000000Z"), seq, name)
}

func (d *dumper) write(m *mqttconn.Message) error {
	d.seq++
	name := dumpName(m.Received, d.seq, m.Topic)
	path := filepath.Join(d.dir, name)
	if err := os.WriteFile(path, m.Payload, 0o644); err != nil {
		return fmt.Errorf("--dump: %w", err)
	}
	rec := mqttconn.NewRecord(m)
	meta := struct {
		mqttconn.Record
		Payload         string `json:"payload,omitempty"`
		PayloadEncoding string `json:"payload_encoding,omitempty"`
		PayloadFile     string `json:"payload_file"`
		PayloadBytes    int    `json:"payload_bytes"`
	}{Record: rec, PayloadFile: name, PayloadBytes: len(m.Payload)}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return fmt.Errorf("--dump: %w", err)
	}
	if err := os.WriteFile(path+".json", append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--dump: %w", err)
	}
	return nil
}
