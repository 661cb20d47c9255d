package mqttconn

import (
	"fmt"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mqtk/mqtk/internal/packet"
)

// What the MQTT 5 client on paho.golang sends besides PUBLISH: CONNECT and
// DISCONNECT properties, the authentication method, and the will
// properties paho leaves out.

// connectProps are the CONNECT properties: mqtk's defaults, then what -x
// and -D connect asked for.
func connectProps(cfg *Config) *paho.ConnectProperties {
	pp := &cfg.Props
	// Our receive maximum [MQTT-3.3.4-9] also sizes paho's queue of
	// incoming messages, allocated up front: the protocol default of 65535
	// would cost half a megabyte per connection, which bench multiplies.
	recvMax := uint16(v5ReceiveMaximum)
	if pp.ReceiveMaximum != nil {
		recvMax = *pp.ReceiveMaximum
	}
	// RequestProblemInfo true leaves the property out (default 1): paho
	// sends 0 when it is false, and brokers such as mochi then strip user
	// properties even from the messages they deliver. Only an explicit
	// -D connect request-problem-information 0 sends 0.
	p := &paho.ConnectProperties{
		ReceiveMaximum:      &recvMax,
		RequestProblemInfo:  pp.RequestProblemInfo == nil || *pp.RequestProblemInfo != 0,
		RequestResponseInfo: pp.RequestResponseInfo != nil && *pp.RequestResponseInfo != 0,
		MaximumPacketSize:   pp.MaximumPacketSize,
		TopicAliasMaximum:   pp.TopicAliasMaximum,
		AuthMethod:          pp.AuthMethod,
		AuthData:            pp.AuthData,
		User:                pahoUser(pp.ConnectUser),
	}
	if se := sessionExpiry(cfg); se != 0 {
		p.SessionExpiryInterval = &se
	}
	return p
}

// disconnectPacket is the DISCONNECT Disconnect sends: reason 0 (normal
// disconnection) with the properties of -D disconnect.
func disconnectPacket(cfg *Config) *paho.Disconnect {
	d := &paho.Disconnect{ReasonCode: 0}
	pp := &cfg.Props
	if pp.DisconnectSessionExpiry != nil || pp.DisconnectReason != "" || len(pp.DisconnectUser) > 0 {
		d.Properties = &paho.DisconnectProperties{
			SessionExpiryInterval: pp.DisconnectSessionExpiry,
			ReasonString:          pp.DisconnectReason,
			User:                  pahoUser(pp.DisconnectUser),
		}
	}
	return d
}

func pahoUser(u []UserProperty) paho.UserProperties {
	if len(u) == 0 {
		return nil
	}
	out := make(paho.UserProperties, len(u))
	for i, p := range u {
		out[i] = paho.UserProperty{Key: p.Key, Value: p.Value}
	}
	return out
}

// authHandler is set when CONNECT names an authentication method: paho
// calls the handler on a successful CONNACK that echoes the method, and
// without one it would dereference nil. mqtk implements no
// authentication exchange of its own, so a broker's challenge (AUTH
// 0x18) is answered with the method alone; the broker decides what
// follows, within the connect timeout.
func authHandler(cfg *Config) paho.Auther {
	if cfg.Props.AuthMethod == "" {
		return nil
	}
	return staticAuth{method: cfg.Props.AuthMethod}
}

type staticAuth struct{ method string }

func (a staticAuth) Authenticate(*paho.Auth) *paho.Auth {
	return &paho.Auth{ReasonCode: 0x18, Properties: &paho.AuthProperties{AuthMethod: a.method}}
}

func (staticAuth) Authenticated() {}

// willDropped reports whether w has properties paho.golang (v0.23)
// leaves out of CONNECT: it packs will properties as CONNECT properties,
// and those have no payload format, message expiry, content type,
// response topic or correlation data.
func willDropped(w *Will) bool {
	return w.PayloadFormat != nil || w.MessageExpiry != nil || w.ContentType != "" || w.ResponseTopic != "" || w.CorrelationData != nil
}

// willPropsFix returns a rewrite of the CONNECT paho wrote that adds the
// will properties it dropped, re-encoded by mqtk's own codec. If the
// packet does not decode, the caller sends paho's bytes as they are.
func willPropsFix(w *Will) func([]byte) ([]byte, error) {
	return func(b []byte) ([]byte, error) {
		rl, n, err := packet.ParseVarint(b[1:])
		if err != nil || 1+n+int(rl) != len(b) {
			return nil, fmt.Errorf("not one whole CONNECT")
		}
		p, err := packet.Decode(b[0], b[1+n:], packet.V5)
		if err != nil {
			return nil, err
		}
		cp, ok := p.(*packet.Connect)
		if !ok || cp.Will == nil {
			return nil, fmt.Errorf("no will in the CONNECT")
		}
		// All of them, as mqtk's own codec writes them: those paho
		// wrote come out the same.
		cp.Will.Properties = w.packetProps()
		return packet.Encode(cp, packet.V5)
	}
}
