package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mqtk/mqtk/internal/clierr"
	"github.com/mqtk/mqtk/internal/mqttconn"
)

// -D/--property COMMAND NAME VALUE (COMMAND user-property KEY VALUE) is
// mosquitto_pub/sub/rr's way to add any MQTT 5 property to a packet. One
// flag takes three or four words, which pflag cannot parse, so
// joinProperties first turns each occurrence into a single
// "--property=COMMAND\x00NAME\x00VALUE" word (NUL cannot occur in an
// argument), and propertyFlag.Set splits it again.

// propSep joins the words of one -D in the rewritten argument list.
const propSep = "\x00"

// propType is how a property's value is written.
type propType int

const (
	propByte propType = iota
	propUint16
	propUint32
	propVarint
	propString
	propBinary
	propPair
)

// propInfo is one MQTT 5 property: its value type and the packets
// (mosquitto's -D command names) the specification allows it in, in
// the order MQTT 5 section 2.2.2.2 lists the properties.
type propInfo struct {
	name    string
	typ     propType
	packets []string
}

var propTable = []propInfo{
	{"payload-format-indicator", propByte, []string{"publish", "will"}},
	{"message-expiry-interval", propUint32, []string{"publish", "will"}},
	{"content-type", propString, []string{"publish", "will"}},
	{"response-topic", propString, []string{"publish", "will"}},
	{"correlation-data", propBinary, []string{"publish", "will"}},
	{"subscription-identifier", propVarint, []string{"publish", "subscribe"}},
	{"session-expiry-interval", propUint32, []string{"connect", "disconnect"}},
	{"assigned-client-identifier", propString, []string{"connack"}},
	{"server-keep-alive", propUint16, []string{"connack"}},
	{"authentication-method", propString, []string{"connect", "connack", "auth"}},
	{"authentication-data", propBinary, []string{"connect", "connack", "auth"}},
	{"request-problem-information", propByte, []string{"connect"}},
	{"will-delay-interval", propUint32, []string{"will"}},
	{"request-response-information", propByte, []string{"connect"}},
	{"response-information", propString, []string{"connack"}},
	{"server-reference", propString, []string{"connack", "disconnect"}},
	{"reason-string", propString, []string{"connack", "puback", "pubrec", "pubrel", "pubcomp", "suback", "unsuback", "disconnect", "auth"}},
	{"receive-maximum", propUint16, []string{"connect", "connack"}},
	{"topic-alias-maximum", propUint16, []string{"connect", "connack"}},
	{"topic-alias", propUint16, []string{"publish"}},
	{"maximum-qos", propByte, []string{"connack"}},
	{"retain-available", propByte, []string{"connack"}},
	{"user-property", propPair, []string{"connect", "connack", "publish", "will", "puback", "pubrec", "pubrel", "pubcomp", "subscribe", "suback", "unsubscribe", "unsuback", "disconnect", "auth"}},
	{"maximum-packet-size", propUint32, []string{"connect", "connack"}},
	{"wildcard-subscription-available", propByte, []string{"connack"}},
	{"subscription-identifier-available", propByte, []string{"connack"}},
	{"shared-subscription-available", propByte, []string{"connack"}},
}

// mqtkSends are the -D commands mqtk can put properties on, per
// packet: what the client sends of its own accord. A broker-to-client
// packet (connack, suback, ...) or an acknowledgement is mosquitto's
// "not supported" too. server-reference is for the broker's DISCONNECT
// only (MQTT 5 section 3.14.2.2.5).
var mqtkSends = map[string][]string{
	"connect": {"session-expiry-interval", "receive-maximum", "maximum-packet-size", "topic-alias-maximum",
		"request-response-information", "request-problem-information", "user-property", "authentication-method", "authentication-data"},
	"publish":     {"payload-format-indicator", "message-expiry-interval", "topic-alias", "response-topic", "correlation-data", "user-property", "content-type"},
	"will":        {"will-delay-interval", "payload-format-indicator", "message-expiry-interval", "content-type", "response-topic", "correlation-data", "user-property"},
	"subscribe":   {"subscription-identifier", "user-property"},
	"unsubscribe": {"user-property"},
	"disconnect":  {"session-expiry-interval", "reason-string", "user-property"},
}

// propCommands are mosquitto's -D command names, as it accepts them.
var propCommands = []string{"connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp",
	"subscribe", "suback", "unsubscribe", "unsuback", "disconnect", "auth", "will"}

// property is one parsed -D.
type property struct {
	command, name, key, value string
	info                      *propInfo
}

func (p property) String() string {
	if p.info != nil && p.info.typ == propPair {
		return fmt.Sprintf("-D %s %s %s %s", p.command, p.name, p.key, p.value)
	}
	return fmt.Sprintf("-D %s %s %s", p.command, p.name, p.value)
}

// propertyFlag is the -D flag's value: every property given, in order.
type propertyFlag struct {
	list    []property
	cmdName string
	// ignored are the -D commands this mqtk command accepts, as
	// mosquitto's client of the same name does, but never sends.
	ignored []string
}

func (f *propertyFlag) String() string { return "" }

func (f *propertyFlag) Type() string { return "COMMAND NAME VALUE" }

// Set parses one -D: the words joinProperties joined. Every check that
// needs only the words is made here, so that cobra reports it as a flag
// error before anything else happens; %w keeps add's hints for flagError.
func (f *propertyFlag) Set(s string) error {
	w := strings.Split(s, propSep)
	if err := f.add(w); err != nil {
		return fmt.Errorf("-D %s: %w", strings.Join(w, " "), err)
	}
	return nil
}

func (f *propertyFlag) add(w []string) error {
	if len(w) < 3 {
		return clierr.Usagef("want COMMAND NAME VALUE (COMMAND user-property KEY VALUE)").Hintf("write e.g. -D publish content-type text/plain")
	}
	p := property{command: strings.ToLower(w[0]), name: strings.ToLower(w[1])}
	if !slices.Contains(propCommands, p.command) {
		return clierr.Usagef("%q is not a command", w[0]).Hintf("use one of %s", strings.Join(sendable(), ", "))
	}
	i := slices.IndexFunc(propTable, func(pi propInfo) bool { return pi.name == p.name })
	if i < 0 {
		return fmt.Errorf("%q is not an MQTT 5 property: %s takes %s", w[1], p.command, validFor(p.command))
	}
	p.info = &propTable[i]
	if p.command == "auth" {
		return clierr.Usagef("mqtk sends no AUTH packet of its own, as mosquitto's clients do not").Hintf("give the authentication method and data with -D connect authentication-method and -D connect authentication-data")
	}
	if _, ok := mqtkSends[p.command]; !ok {
		return fmt.Errorf("%s is a packet the broker sends or an acknowledgement, and has no properties to set: properties can be set for %s", p.command, strings.Join(sendable(), ", "))
	}
	if !slices.Contains(mqtkSends[p.command], p.name) {
		if slices.Contains(p.info.packets, p.command) {
			// Allowed in the packet, but not from a client: a PUBLISH's
			// subscription identifiers are the broker's, as is a
			// DISCONNECT's server reference (mosquitto refuses the first).
			return fmt.Errorf("%s is set by the broker, not the client, in %s: %s takes %s", p.name, strings.ToUpper(p.command), p.command, validFor(p.command))
		}
		return fmt.Errorf("%s is not a %s property: %s takes %s", p.name, strings.ToUpper(p.command), p.command, validFor(p.command))
	}
	switch {
	case p.info.typ == propPair && len(w) != 4:
		return clierr.Usagef("user-property takes a KEY and a VALUE").Hintf("write e.g. -D %s user-property key value", p.command)
	case p.info.typ == propPair:
		p.key, p.value = w[2], w[3]
	case len(w) != 3:
		return fmt.Errorf("%s takes one value", p.name)
	default:
		p.value = w[2]
	}
	f.list = append(f.list, p)
	return nil
}

func sendable() []string {
	return []string{"connect", "publish", "subscribe", "unsubscribe", "disconnect", "will"}
}

func validFor(command string) string {
	if names, ok := mqtkSends[command]; ok {
		return strings.Join(names, ", ")
	}
	return "no properties mqtk can send"
}

// addPropertyFlag binds -D/--property on cmd. cf applies the connection
// level ones (connect, will, subscribe, unsubscribe, disconnect) when it
// builds the Config.
func addPropertyFlag(cmd *cobra.Command, cf *connFlags, ignored ...string) *propertyFlag {
	f := &propertyFlag{cmdName: cmd.Name(), ignored: ignored}
	fl := cmd.Flags().VarPF(f, "property", "D", "MQTT 5 property for a packet, as mosquitto's -D: `COMMAND NAME VALUE`, or COMMAND user-property KEY VALUE (repeatable); COMMAND is connect, publish, subscribe, unsubscribe, disconnect or will; binary values take hex: or base64:")
	fl.Annotations = map[string][]string{propertyAnnotation: {"yes"}}
	cf.props = f
	return f
}

// propertyAnnotation marks the flag joinProperties gathers words for.
const propertyAnnotation = "mqtk_property_words"

// joinProperties rewrites args (those after the command's name) so that
// each -D/--property and the words it takes become one argument. Values
// of other flags are skipped using cmd's flag set, so `-m -D` still
// publishes "-D"; after "--" nothing is rewritten.
func joinProperties(cmd *cobra.Command, args []string) []string {
	local, inherited := cmd.Flags(), cmd.InheritedFlags()
	pf := local.Lookup("property")
	if pf == nil || pf.Annotations[propertyAnnotation] == nil {
		return args
	}
	lookup := func(name string) *pflag.Flag {
		if f := local.Lookup(name); f != nil {
			return f
		}
		return inherited.Lookup(name)
	}
	short := func(name string) *pflag.Flag {
		if f := local.ShorthandLookup(name); f != nil {
			return f
		}
		return inherited.ShorthandLookup(name)
	}
	takesValue := func(f *pflag.Flag) bool { return f != nil && f.NoOptDefVal == "" }
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(out, args[i:]...)
		case a == "-D" || a == "--property":
			// The command and name, then one value (two for user-property).
			n := 3
			if i+2 < len(args) && strings.EqualFold(args[i+2], "user-property") {
				n = 4
			}
			end := min(i+1+n, len(args))
			out = append(out, "--property="+strings.Join(args[i+1:end], propSep))
			i = end - 1
		case strings.HasPrefix(a, "--"):
			out = append(out, a)
			if !strings.Contains(a, "=") && takesValue(lookup(a[2:])) && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// A group of shorthands: the first that takes a value takes
			// the rest of the word, or the next word.
			out = append(out, a)
			for j := 1; j < len(a); j++ {
				f := short(a[j : j+1])
				if takesValue(f) {
					if j == len(a)-1 && i+1 < len(args) {
						i++
						out = append(out, args[i])
					}
					break
				}
			}
		default:
			if cmd.Annotations[flagsBeforeArgs] != "" {
				// Everything from the first argument on belongs to what
				// the command runs (`mqtk reply --exec grep -D x`).
				return append(out, args[i:]...)
			}
			out = append(out, a)
		}
	}
	return out
}

// flagsBeforeArgs marks a command whose flags all come before its first
// argument (pflag's SetInterspersed(false), which has no getter): -D after
// that argument is not mqtk's.
const flagsBeforeArgs = "mqtk/flags-before-args"

// withProperties is args with -D's words joined, for the command args
// name. Commands without -D get args unchanged.
func withProperties(root *cobra.Command, args []string) []string {
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root || cmd.Flags().Lookup("property") == nil {
		return args
	}
	// Find drops the command names; put them back in front.
	var path []string
	for c := cmd; c != root && c != nil; c = c.Parent() {
		path = append([]string{c.Name()}, path...)
	}
	return append(path, joinProperties(cmd, rest)...)
}

// applyConn puts the connection-level properties into c, on the fields
// the dedicated flags use (-x is SessionExpiry), and warns about those
// this command never sends, which mosquitto accepts and ignores.
func (f *propertyFlag) applyConn(c *mqttconn.Config, a *app) error {
	if f == nil || len(f.list) == 0 {
		return nil
	}
	if c.Version == mqttconn.V311 || c.Version == mqttconn.V31 {
		return &clierr.Error{Kind: clierr.KindUsage,
			Err:   fmt.Errorf("%s: properties are MQTT 5, and -V %s has none", f.list[0], c.Version),
			Hints: []string{"drop -V (mqtk speaks MQTT 5 by default), or the -D options"}}
	}
	pp := &c.Props
	for _, p := range f.list {
		if slices.Contains(f.ignored, p.command) {
			a.io.Warnf("%s: mqtk %s sends no %s packet, so it has no effect", p, f.cmdName, strings.ToUpper(p.command))
			continue
		}
		var err error
		switch p.command {
		case "connect":
			switch p.name {
			case "session-expiry-interval":
				var v *uint32
				if v, err = p.uint32(nil, 0); err == nil {
					if c.SessionExpiry != nil {
						return dup(p)
					}
					d := time.Duration(*v) * time.Second
					c.SessionExpiry = &d
				}
			case "receive-maximum":
				pp.ReceiveMaximum, err = p.uint16(pp.ReceiveMaximum, 1)
			case "maximum-packet-size":
				pp.MaximumPacketSize, err = p.uint32(pp.MaximumPacketSize, 1)
			case "topic-alias-maximum":
				pp.TopicAliasMaximum, err = p.uint16(pp.TopicAliasMaximum, 0)
			case "request-response-information":
				pp.RequestResponseInfo, err = p.flagByte(pp.RequestResponseInfo)
			case "request-problem-information":
				pp.RequestProblemInfo, err = p.flagByte(pp.RequestProblemInfo)
			case "authentication-method":
				err = p.str(&pp.AuthMethod)
			case "authentication-data":
				err = p.binary(&pp.AuthData)
			case "user-property":
				pp.ConnectUser = append(pp.ConnectUser, p.pair())
			}
		case "will":
			if c.Will == nil {
				// mosquitto takes will properties without a will and
				// sends nothing; say so rather than fail a script.
				a.io.Warnf("%s: no will to attach it to (give --will-topic), so it has no effect", p)
				continue
			}
			err = p.applyMessage(msgTarget{
				user: &c.Will.UserProperties, contentType: &c.Will.ContentType, responseTopic: &c.Will.ResponseTopic,
				correlation: &c.Will.CorrelationData, expiry: &c.Will.MessageExpiry, format: &c.Will.PayloadFormat,
				delay: &c.Will.DelayInterval,
			})
		case "subscribe":
			// subscription-identifier goes through the command's own
			// option (sub's --subscription-id): see applySubscriptionID.
			if p.name == "user-property" {
				pp.SubscribeUser = append(pp.SubscribeUser, p.pair())
			}
		case "unsubscribe":
			pp.UnsubscribeUser = append(pp.UnsubscribeUser, p.pair())
		case "disconnect":
			switch p.name {
			case "session-expiry-interval":
				pp.DisconnectSessionExpiry, err = p.uint32(pp.DisconnectSessionExpiry, 0)
			case "reason-string":
				err = p.str(&pp.DisconnectReason)
			case "user-property":
				pp.DisconnectUser = append(pp.DisconnectUser, p.pair())
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// msgTarget points at the fields a PUBLISH's (or a will's) properties go
// to: pub.Props for `mqtk pub`, so -D publish and the dedicated flags
// (--content-type, ...) share one path; a will; rr's request.
type msgTarget struct {
	user          *[]mqttconn.UserProperty
	contentType   *string
	responseTopic *string
	correlation   *[]byte
	expiry        **uint32
	format        **byte
	alias         *uint16  // publish only
	delay         **uint32 // will only
}

// applyPublish puts every -D publish into t.
func (f *propertyFlag) applyPublish(t msgTarget) error {
	if f == nil {
		return nil
	}
	for _, p := range f.list {
		if p.command != "publish" {
			continue
		}
		if err := p.applyMessage(t); err != nil {
			return err
		}
	}
	return nil
}

// applySubscriptionID puts -D subscribe subscription-identifier into id,
// the field --subscription-id fills.
func (f *propertyFlag) applySubscriptionID(id *int) error {
	if f == nil {
		return nil
	}
	for _, p := range f.list {
		if p.command != "subscribe" || p.name != "subscription-identifier" {
			continue
		}
		n, err := p.number(1, 268435455)
		if err != nil {
			return err
		}
		if *id != 0 {
			return dup(p)
		}
		*id = int(n)
	}
	return nil
}

func (p property) applyMessage(t msgTarget) error {
	var err error
	switch p.name {
	case "payload-format-indicator":
		*t.format, err = p.flagByte(*t.format)
	case "message-expiry-interval":
		*t.expiry, err = p.uint32(*t.expiry, 0)
	case "content-type":
		err = p.str(t.contentType)
	case "response-topic":
		err = p.str(t.responseTopic)
	case "correlation-data":
		if *t.correlation != nil {
			return dup(p)
		}
		err = p.binary(t.correlation)
	case "topic-alias":
		var v *uint16
		if v, err = p.uint16(nil, 1); err == nil {
			if *t.alias != 0 {
				return dup(p)
			}
			*t.alias = *v
		}
	case "will-delay-interval":
		*t.delay, err = p.uint32(*t.delay, 0)
	case "user-property":
		*t.user = append(*t.user, p.pair())
	}
	return err
}

// dup is a property given twice, by -D or by a flag of the same meaning.
// MQTT allows each of these once per packet (only user-property repeats).
func dup(p property) error {
	return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("%s: %s is already set", p, p.name),
		Hints: []string{fmt.Sprintf("a packet carries %s once: give it once, with -D or with the flag of the same meaning (-x, --content-type, ...)", p.name)}}
}

func (p property) usage(format string, args ...any) error {
	return &clierr.Error{Kind: clierr.KindUsage, Err: fmt.Errorf("%s: %s", p, fmt.Sprintf(format, args...))}
}

// number parses a whole number in lo..hi.
func (p property) number(lo, hi uint64) (uint64, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(p.value), 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, p.usage("%s takes a whole number from %d to %d", p.name, lo, hi)
	}
	return n, nil
}

func (p property) uint16(old *uint16, lo uint64) (*uint16, error) {
	if old != nil {
		return nil, dup(p)
	}
	n, err := p.number(lo, math.MaxUint16)
	v := uint16(n)
	return &v, err
}

func (p property) uint32(old *uint32, lo uint64) (*uint32, error) {
	if old != nil {
		return nil, dup(p)
	}
	n, err := p.number(lo, math.MaxUint32)
	v := uint32(n)
	return &v, err
}

// flagByte is a property whose value is 0 or 1 (the request flags and
// the payload format indicator): anything else is a protocol error
// [MQTT-3.1.2.11] that would cost the connection, so it is refused here.
func (p property) flagByte(old *byte) (*byte, error) {
	if old != nil {
		return nil, dup(p)
	}
	n, err := p.number(0, 1)
	v := byte(n)
	return &v, err
}

func (p property) str(dst *string) error {
	if *dst != "" {
		return dup(p)
	}
	*dst = p.value
	return nil
}

// binary reads hex:… and base64:… as pub's --correlation-data does, so
// that binary values mosquitto cannot express (mosquitto#3212) can be.
func (p property) binary(dst *[]byte) error {
	if *dst != nil {
		return dup(p)
	}
	b, err := parseBinary(p.name, p.value)
	if err != nil {
		return err
	}
	*dst = b
	return nil
}

func (p property) pair() mqttconn.UserProperty {
	return mqttconn.UserProperty{Key: p.key, Value: p.value}
}
