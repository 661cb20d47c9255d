package sub

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/mqtk/mqtk/internal/mqttconn"
)

// mosquitto 2.1's -F additions: %f and %d read the payload as an IEEE 754
// number, %.N<sep>x writes the hex in groups of N bytes.
func TestFormatIEEEAndGroupedHex(t *testing.T) {
	f32 := func(x float32) []byte { return binary.LittleEndian.AppendUint32(nil, math.Float32bits(x)) }
	f64 := func(x float64) []byte { return binary.LittleEndian.AppendUint64(nil, math.Float64bits(x)) }
	for _, tc := range []struct {
		format  string
		payload []byte
		want    string
	}{
		{"%f", f32(21.5), "21.500000"},
		{"%.2f", f32(-3.25), "-3.25"},
		{"%8.1f|", f32(1.5), "     1.5|"},
		{"%-8.1f|", f32(1.5), "1.5     |"},
		{"%08.2f", f32(1.5), "00001.50"},
		{"%d", f64(math.Pi), "3.141593"},
		{"%.10d", f64(math.Pi), "3.1415926536"},
		{"%f|%d", f64(1), "|1.000000"}, // 8 bytes are no float32: %f prints nothing
		{"%f", []byte{1, 2, 3}, ""},
		{"%f %f %f", f32(float32(math.Inf(1))), "inf inf inf"},
		{"%d", f64(math.NaN()), "nan"},
		{"%d", f64(math.Inf(-1)), "-inf"},
		{"%.2:x", []byte{0xde, 0xad, 0xbe, 0xef, 0x01}, "dead:beef:01"},
		{"%.1 X", []byte{0xde, 0xad, 0xbe}, "DE AD BE"},
		{"%.4-x", []byte{1, 2, 3, 4, 5, 6, 7, 8}, "01020304-05060708"},
		{"%20.2:x|", []byte{0xab, 0xcd, 0xef}, "             abcd:ef|"},
		{"%.2:x", nil, ""},
		{"%x %.3x", []byte{0xab, 0xcd}, "abcd abcd"}, // precision alone still leaves %x whole
	} {
		f, err := CompileFormat(tc.format)
		if err != nil {
			t.Errorf("%q: %v", tc.format, err)
			continue
		}
		got := string(f.Append(nil, &mqttconn.Message{Topic: "t", Payload: tc.payload}, time.Unix(0, 0), FormatEnv{}))
		if got != tc.want {
			t.Errorf("%q on % x = %q, want %q", tc.format, tc.payload, got, tc.want)
		}
	}
	if _, err := CompileFormat("%.0:x"); err == nil {
		t.Error("a group of 0 bytes was accepted")
	}
}

// --pretty re-lays JSON as cJSON's formatted printer does: nested objects
// indented one tab per level (arrays count), empty ones on their own.
func TestPrettyJSONLayout(t *testing.T) {
	got := string(appendPrettyJSON(nil, []byte(`{"a":{"b":[1,{"c":"x,y:{"}],"e":{}},"f":[]}`)))
	want := "{\n\t\"a\":\t{\n\t\t\"b\":\t[1, {\n\t\t\t\t\"c\":\t\"x,y:{\"\n\t\t\t}],\n\t\t\"e\":\t{\n\t\t}\n\t},\n\t\"f\":\t[]\n}"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
