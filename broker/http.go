package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/mqtk/mqtk/broker/engine"
)

// serveHTTP starts the --http endpoint on addr (which may be "127.0.0.1:0"):
//
//	/metrics            Prometheus text exposition format 0.0.4
//	/healthz            200 "ok" while the broker serves
//	/api/clients        JSON list of sessions (connected and offline persistent)
//	/api/subscriptions  JSON list of subscriptions
//	/debug/pprof/*      Go profiles, only when pprof is true
//
// It returns the bound address and a function that shuts the server down
// gracefully (bounded by its context). ctx bounds only the start-up (the
// broker passes Start's context, which ends once Start returns); the server
// runs until the shutdown function is called.
func serveHTTP(ctx context.Context, addr string, b *Broker, pprofOn bool) (net.Addr, func(context.Context) error, error) {
	srv := b.eng
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(renderMetrics(srv.Stats(), b.authFailures.Load(), b.uptime()))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /api/clients", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, apiClients(srv))
	})
	mux.HandleFunc("GET /api/subscriptions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, apiSubscriptions(srv))
	})
	if pprofOn {
		// Registered on our own mux: importing net/http/pprof also adds its
		// handlers to http.DefaultServeMux, which we never serve.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("http listener %s: %w", addr, err)
	}
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	var once atomic.Bool
	shutdown := func(sctx context.Context) error {
		if !once.CompareAndSwap(false, true) {
			return nil
		}
		err := hs.Shutdown(sctx)
		if err != nil {
			_ = hs.Close()
		}
		if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("stop http endpoint: %w", err)
		}
		return nil
	}
	return ln.Addr(), shutdown, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

// apiClient is one entry of /api/clients.
type apiClient struct {
	ID              string `json:"id"`
	Username        string `json:"username,omitempty"`
	Remote          string `json:"remote,omitempty"`
	Listener        string `json:"listener,omitempty"`
	ProtocolVersion byte   `json:"protocol_version"`
	Connected       bool   `json:"connected"`
	Clean           bool   `json:"clean"`
	Keepalive       uint16 `json:"keepalive"`
	Subscriptions   int    `json:"subscriptions"`
	Inflight        int    `json:"inflight"`
}

func apiClients(srv *engine.Server) []apiClient {
	out := []apiClient{}
	for _, c := range srv.Clients() {
		out = append(out, apiClient{
			ID: c.ID, Username: c.Username, Remote: c.Remote, Listener: c.Listener,
			ProtocolVersion: c.Version, Connected: c.Connected, Clean: c.Clean,
			Keepalive: c.KeepAlive, Subscriptions: c.Subscriptions, Inflight: c.Inflight,
		})
	}
	return out
}

// apiSubscription is one entry of /api/subscriptions.
type apiSubscription struct {
	Client            string `json:"client"`
	Filter            string `json:"filter"`
	Qos               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	RetainHandling    byte   `json:"retain_handling,omitempty"`
	Identifier        int    `json:"identifier,omitempty"`
}

func apiSubscriptions(srv *engine.Server) []apiSubscription {
	out := []apiSubscription{}
	for _, sub := range srv.Subscriptions() {
		out = append(out, apiSubscription{
			Client: sub.Client, Filter: sub.Filter, Qos: sub.QoS, NoLocal: sub.NoLocal,
			RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling,
			Identifier: int(sub.Identifier),
		})
	}
	return out
}

// promWriter writes metric families: one HELP and one TYPE line, then the
// samples, as the text exposition format requires.
type promWriter struct{ b bytes.Buffer }

func (p *promWriter) family(name, typ, help string) {
	fmt.Fprintf(&p.b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (p *promWriter) sample(name, labels string, v uint64) {
	if labels != "" {
		fmt.Fprintf(&p.b, "%s{%s} %d\n", name, labels, v)
		return
	}
	fmt.Fprintf(&p.b, "%s %d\n", name, v)
}

func (p *promWriter) one(name, typ, help string, v uint64) {
	p.family(name, typ, help)
	p.sample(name, "", v)
}

func (p *promWriter) byQos(name, help string, vs [3]uint64) {
	p.family(name, "counter", help)
	for q, v := range vs {
		p.sample(name, fmt.Sprintf(`qos="%d"`, q), v)
	}
}

func renderMetrics(st engine.Stats, authFailures uint64, uptime time.Duration) []byte {
	var p promWriter
	p.one("mqtk_broker_uptime_seconds", "gauge", "Seconds since the broker started.", uint64(uptime/time.Second))
	p.one("mqtk_broker_clients_connected", "gauge", "Clients currently connected.", uint64(st.Clients))
	p.one("mqtk_broker_sessions", "gauge", "Sessions known to the broker, connected or offline persistent.",
		uint64(st.Sessions))
	p.one("mqtk_broker_connections_total", "counter", "Connections accepted (CONNACK success) since start.",
		st.Connects)
	p.one("mqtk_broker_subscriptions", "gauge", "Active subscriptions.", uint64(st.Subscriptions))
	p.one("mqtk_broker_retained_messages", "gauge", "Retained messages held, not counting the broker's own $SYS topics.",
		uint64(st.Retained))
	p.one("mqtk_broker_inflight_messages", "gauge", "QoS 1/2 messages in flight or queued for sessions.",
		uint64(st.Inflight))
	p.byQos("mqtk_broker_messages_received_total", "PUBLISH packets received from clients.", st.MsgsIn)
	p.byQos("mqtk_broker_messages_sent_total", "PUBLISH packets sent to clients.", st.MsgsOut)
	p.byQos("mqtk_broker_payload_bytes_received_total", "Payload bytes of PUBLISH packets received.", st.BytesIn)
	p.byQos("mqtk_broker_payload_bytes_sent_total", "Payload bytes of PUBLISH packets sent.", st.BytesOut)
	p.one("mqtk_broker_bytes_received_total", "counter", "Bytes read from client connections, all packet types.", st.NetIn)
	p.one("mqtk_broker_bytes_sent_total", "counter", "Bytes written to client connections, all packet types.", st.NetOut)
	p.family("mqtk_broker_messages_dropped_total", "counter",
		"Messages not delivered, by reason: queue_full (a client's queue was full, or it stalled), discarded (a queued QoS 1/2 message expired).")
	p.sample("mqtk_broker_messages_dropped_total", `reason="queue_full"`, st.Dropped)
	p.sample("mqtk_broker_messages_dropped_total", `reason="discarded"`, st.Discarded)
	p.one("mqtk_broker_auth_failures_total", "counter", "Connections refused for bad credentials or certificates.",
		authFailures)
	p.one("mqtk_broker_subscribe_denied_total", "counter", "Subscription filters refused in a SUBACK.",
		st.SubscribeDenied)
	return p.b.Bytes()
}
