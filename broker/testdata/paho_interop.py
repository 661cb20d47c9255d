"""Interop scenarios for mqtk's broker with python paho-mqtt 1.6.1.

usage: paho_interop.py SCENARIO HOST PORT [--version 311|5] [--tag T]
           [--transport tcp|websockets] [--ws-path P]
           [--cafile F [--cert F --key F]] [--user U --password P]
Prints "ok" and exits 0 on success; prints the reason and exits 1 otherwise.
Every wait is bounded. --tag keeps topics and client ids of runs against
the same broker apart.
"""
import argparse
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

ap = argparse.ArgumentParser()
ap.add_argument("scenario")
ap.add_argument("host")
ap.add_argument("port", type=int)
ap.add_argument("--version", default="5", choices=("311", "5"))
ap.add_argument("--tag", default="t")
ap.add_argument("--transport", default="tcp")
ap.add_argument("--ws-path", default="/mqtt")
ap.add_argument("--cafile")
ap.add_argument("--cert")
ap.add_argument("--key")
ap.add_argument("--user")
ap.add_argument("--password")
args = ap.parse_args()
host, port, transport, tag = args.host, args.port, args.transport, args.tag
VERSION = mqtt.MQTTv5 if args.version == "5" else mqtt.MQTTv311
TIMEOUT = 15

# Refusal codes as paho reports them: CONNACK return code 5 for 3.1.1,
# reason codes 0x86/0x87 for MQTT 5; SUBACK 0x80 for 3.1.1, 0x87 for 5.
CONNACK_REFUSED = {mqtt.MQTTv311: {5}, mqtt.MQTTv5: {0x86, 0x87}}
SUBACK_DENIED = {mqtt.MQTTv311: 0x80, mqtt.MQTTv5: 0x87}


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def code(rc):
    """An int from a 3.1.1 return code or an MQTT 5 ReasonCodes."""
    return rc if isinstance(rc, int) else rc.value


class AckClient(mqtt.Client):
    """paho 1.6.1 parses the MQTT 5 PUBACK/PUBCOMP reason code and then
    drops it (on_publish gets only the mid), so this reads it from the
    packet before paho handles it."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.ack_codes = {}

    def _handle_pubackcomp(self, cmd):
        pkt = self._in_packet["packet"]
        if len(pkt) >= 2:
            mid = int.from_bytes(pkt[:2], "big")
            self.ack_codes[mid] = pkt[2] if len(pkt) > 2 else 0
        return super()._handle_pubackcomp(cmd)


class Conn:
    def __init__(self, cid, version=None, clean=True, will=None, expiry=None,
                 user=None, password=None, expect_refusal=False):
        self.version = version or VERSION
        kw = {"client_id": cid, "protocol": self.version, "transport": transport,
              "reconnect_on_failure": False}
        if self.version != mqtt.MQTTv5:
            kw["clean_session"] = clean
        self.c = AckClient(**kw)
        if transport == "websockets":
            self.c.ws_set_options(path=args.ws_path)
        if args.cafile:
            self.c.tls_set(ca_certs=args.cafile, certfile=args.cert, keyfile=args.key,
                           cert_reqs=ssl.CERT_REQUIRED)
        user = user or args.user
        if user:
            self.c.username_pw_set(user, password if password is not None else args.password)
        self.msgs = []
        self.cv = threading.Condition()
        self.granted = None
        self.rc = None
        self.session_present = None
        self.disconnected = threading.Event()
        self.c.on_message = self._msg
        self.c.on_subscribe = self._sub
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        if will:
            self.c.will_set(*will)
        self.answered = threading.Event()
        self.c.on_connect = self._connect
        props = None
        if self.version == mqtt.MQTTv5 and expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
        if self.version == mqtt.MQTTv5:
            self.c.connect(host, port, 30, clean_start=clean, properties=props)
        else:
            self.c.connect(host, port, 30)
        self.c.loop_start()
        deadline = time.time() + TIMEOUT
        while not self.answered.is_set() and not self.disconnected.is_set() and time.time() < deadline:
            time.sleep(0.02)
        if expect_refusal:
            return
        if not self.answered.is_set():
            self.c.loop_stop()
            fail(cid + ": no CONNACK")
        if self.rc != 0:
            self.c.loop_stop()
            fail("%s refused with %d" % (cid, self.rc))

    def _connect(self, c, u, flags, rc, *rest):
        self.rc = code(rc)
        self.session_present = bool(flags.get("session present"))
        self.answered.set()

    def _msg(self, c, u, m):
        with self.cv:
            self.msgs.append(m)
            self.cv.notify_all()

    def _sub(self, c, u, mid, granted, *rest):
        with self.cv:
            self.granted = [code(g) for g in granted]
            self.cv.notify_all()

    def subscribe(self, topic, qos):
        self.granted = None
        self.c.subscribe(topic, qos)
        with self.cv:
            if not self.cv.wait_for(lambda: self.granted is not None, TIMEOUT):
                fail("no SUBACK for " + topic)
        return self.granted

    def publish(self, topic, payload, qos=1, retain=False, properties=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(TIMEOUT)
        if not info.is_published():
            fail("publish to %s not acknowledged" % topic)
        return info.mid

    def wait(self, n, timeout=TIMEOUT):
        with self.cv:
            self.cv.wait_for(lambda: len(self.msgs) >= n, timeout)
            return list(self.msgs)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def qos():
    for version in (mqtt.MQTTv311, mqtt.MQTTv5):
        sub = Conn("paho-sub", version)
        pub = Conn("paho-pub", version)
        for q in (0, 1, 2):
            sub.subscribe("paho/q%d" % q, q)
        for q in (0, 1, 2):
            pub.c.publish("paho/q%d" % q, "m%d" % q, qos=q).wait_for_publish(TIMEOUT)
        got = sub.wait(3)
        if sorted((m.topic, m.payload, m.qos) for m in got) != [
            ("paho/q0", b"m0", 0), ("paho/q1", b"m1", 1), ("paho/q2", b"m2", 2)]:
            fail("v%d got %r" % (version, [(m.topic, m.payload, m.qos) for m in got]))
        sub.close()
        pub.close()


def share():
    a = Conn("share-a", mqtt.MQTTv5)
    b = Conn("share-b", mqtt.MQTTv5)
    for c in (a, b):
        c.subscribe("$share/workers/jobs", 1)
    pub = Conn("share-pub", mqtt.MQTTv5)
    for i in range(6):
        pub.c.publish("jobs", str(i), qos=1).wait_for_publish(TIMEOUT)
    deadline = time.time() + TIMEOUT
    while len(a.msgs) + len(b.msgs) < 6 and time.time() < deadline:
        time.sleep(0.05)
    if len(a.msgs) != 3 or len(b.msgs) != 3:
        fail("shared subscription split %d/%d, want 3/3" % (len(a.msgs), len(b.msgs)))
    payloads = sorted(m.payload for m in a.msgs + b.msgs)
    if payloads != [str(i).encode() for i in range(6)]:
        fail("shared subscription delivered %r" % payloads)


def alias_expiry():
    sub = Conn("alias-sub", mqtt.MQTTv5)
    sub.subscribe("alias/t", 1)
    pub = Conn("alias-pub", mqtt.MQTTv5)
    p1 = Properties(PacketTypes.PUBLISH)
    p1.TopicAlias = 1
    pub.c.publish("alias/t", "first", qos=1, properties=p1).wait_for_publish(TIMEOUT)
    p2 = Properties(PacketTypes.PUBLISH)
    p2.TopicAlias = 1
    pub.c.publish("", "second", qos=1, properties=p2).wait_for_publish(TIMEOUT)
    got = sub.wait(2)
    if [(m.topic, m.payload) for m in got] != [("alias/t", b"first"), ("alias/t", b"second")]:
        fail("topic alias: got %r" % [(m.topic, m.payload) for m in got])
    # Message expiry: a retained message with a 1 s expiry is gone after 3 s;
    # one with 300 s is still there and carries its remaining interval.
    short = Properties(PacketTypes.PUBLISH)
    short.MessageExpiryInterval = 1
    long_ = Properties(PacketTypes.PUBLISH)
    long_.MessageExpiryInterval = 300
    pub.c.publish("exp/short", "s", qos=1, retain=True, properties=short).wait_for_publish(TIMEOUT)
    pub.c.publish("exp/long", "l", qos=1, retain=True, properties=long_).wait_for_publish(TIMEOUT)
    time.sleep(3)
    late = Conn("exp-late", mqtt.MQTTv5)
    late.subscribe("exp/#", 1)
    got = late.wait(2, timeout=2)
    if [m.topic for m in got] != ["exp/long"]:
        fail("message expiry: late subscriber got %r" % [m.topic for m in got])
    exp = getattr(got[0].properties, "MessageExpiryInterval", None)
    if exp is None or not (0 < exp <= 300):
        fail("message expiry interval not forwarded: %r" % exp)
    pub.c.publish("exp/long", "", qos=1, retain=True).wait_for_publish(TIMEOUT)


def will():
    """Connects with a will and waits to be killed by the test."""
    Conn("paho-willer-" + tag, will=("paho/will/" + tag, "gone", 1, False))
    print("READY", flush=True)
    time.sleep(60)


def retained():
    """A retained message reaches a late subscriber with the retain flag;
    once cleared (empty retained payload) a late subscriber gets only what is
    published live afterwards."""
    t = "paho/%s/retained" % tag
    pub = Conn("paho-ret-pub-" + tag)
    pub.publish(t, "kept", retain=True)
    late = Conn("paho-ret-late-" + tag)
    late.subscribe(t, 1)
    got = late.wait(1)
    if [(m.payload, m.retain) for m in got] != [(b"kept", True)]:
        fail("retained: late subscriber got %r" % [(m.payload, m.retain) for m in got])
    late.close()
    pub.publish(t, "", retain=True)
    after = Conn("paho-ret-after-" + tag)
    after.subscribe(t, 1)
    # Retained messages are sent in answer to the SUBSCRIBE, so before any
    # message published after the SUBACK: if the cleared one were still
    # there, it would arrive ahead of "live".
    pub.publish(t, "live")
    got = after.wait(1)
    if [(m.payload, m.retain) for m in got] != [(b"live", False)]:
        fail("cleared retained: subscriber got %r" % [(m.payload, m.retain) for m in got])
    for c in (pub, after):
        c.close()


def persist():
    """QoS 1 messages published while a persistent session's client is
    offline are delivered, in order, when it reconnects."""
    cid, t = "paho-persist-" + tag, "paho/%s/queue" % tag
    sub = Conn(cid, clean=True, expiry=300)  # start from an empty session
    sub.close()
    sub = Conn(cid, clean=False, expiry=300)
    sub.subscribe(t, 1)
    sub.close()
    pub = Conn("paho-persist-pub-" + tag)
    for i in range(1, 4):
        pub.publish(t, "queued%d" % i)
    pub.close()
    back = Conn(cid, clean=False, expiry=300)
    if not back.session_present:
        fail("reconnect: session present flag not set")
    got = back.wait(3)
    if [(m.payload, m.qos) for m in got] != [(b"queued1", 1), (b"queued2", 1), (b"queued3", 1)]:
        fail("persistent session delivered %r" % [(m.payload, m.qos) for m in got])
    back.close()
    Conn(cid, clean=True, expiry=0).close()  # leave no session behind


def auth():
    """Against the password file and ACL of TestInteropPasswordAndACL:
    alice (mosquitto_passwd hash) may read and write alice/#, bob (mqtk's
    hash) may only read alice/#."""
    for user, pw in (("alice", "wrong"), ("mallory", "s3cret")):
        c = Conn("paho-bad-" + tag, user=user, password=pw, expect_refusal=True)
        c.c.loop_stop()
        if c.rc not in CONNACK_REFUSED[VERSION]:
            fail("login %s/%s: CONNACK %r, want one of %r" % (user, pw, c.rc, CONNACK_REFUSED[VERSION]))
    t = "alice/paho/" + tag
    bob = Conn("paho-bob-" + tag, user="bob", password="hunter2")
    granted = bob.subscribe(t, 1)
    if granted != [1]:
        fail("allowed subscribe granted %r" % granted)
    granted = bob.subscribe("secret/paho/" + tag, 1)
    if granted != [SUBACK_DENIED[VERSION]]:
        fail("denied subscribe granted %r, want %#x" % (granted, SUBACK_DENIED[VERSION]))
    alice = Conn("paho-alice-" + tag, user="alice", password="s3cret")
    alice.publish(t, "from-alice")
    if [m.payload for m in bob.wait(1)] != [b"from-alice"]:
        fail("allowed publish: bob got %r" % [m.payload for m in bob.msgs])

    # bob may not write: an MQTT 5 PUBACK says 0x87; a 3.1.1 broker may
    # only ack or close the connection [MQTT-3.3.5-2]. Either way, nothing
    # is delivered: alice's next message is the next one bob sees.
    writer = Conn("paho-bob-writer-" + tag, user="bob", password="hunter2")
    info = writer.c.publish(t, "from-bob", qos=1)
    deadline = time.time() + TIMEOUT
    while not info.is_published() and not writer.disconnected.is_set() and time.time() < deadline:
        time.sleep(0.02)
    if VERSION == mqtt.MQTTv5:
        if writer.c.ack_codes.get(info.mid) != 0x87:
            fail("denied publish: PUBACK reason %r, want 0x87" % writer.c.ack_codes.get(info.mid))
    elif not info.is_published() and not writer.disconnected.is_set():
        fail("denied publish: neither acknowledged nor disconnected")
    writer.close()
    alice.publish(t, "sentinel")
    got = [m.payload for m in bob.wait(2)]
    if got != [b"from-alice", b"sentinel"]:
        fail("denied publish was delivered: bob got %r" % got)
    for c in (bob, alice):
        c.close()


def roundtrip():
    """One QoS 1 message from a publisher to a subscriber (used over TLS)."""
    t = "tls/paho/" + tag
    sub = Conn("paho-rt-sub-" + tag)
    sub.subscribe(t, 1)
    pub = Conn("paho-rt-pub-" + tag)
    pub.publish(t, "secure")
    got = sub.wait(1)
    if [(m.topic, m.payload) for m in got] != [(t, b"secure")]:
        fail("got %r" % [(m.topic, m.payload) for m in got])
    for c in (sub, pub):
        c.close()


def refused():
    """The connection must not be established (for example no client
    certificate where one is required, or a server certificate from a CA
    the client does not trust). Run without paho's loop thread: a TLS
    alert raises in that thread and would end it silently."""
    c = mqtt.Client(client_id="paho-refused-" + tag, protocol=VERSION,
                    transport=transport, reconnect_on_failure=False)
    c.tls_set(ca_certs=args.cafile, certfile=args.cert, keyfile=args.key,
              cert_reqs=ssl.CERT_REQUIRED)
    answer = {}
    c.on_connect = lambda cl, u, flags, rc, *rest: answer.setdefault("rc", code(rc))
    try:
        c.connect(host, port, 30)
        deadline = time.time() + TIMEOUT
        while "rc" not in answer and time.time() < deadline:
            rc = c.loop(timeout=0.2)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                print("closed: rc %d" % rc)
                return
    except OSError as e:  # ssl.SSLError is an OSError
        print("refused: %s" % e)
        return
    if "rc" not in answer:
        fail("neither refused nor closed within %ds" % TIMEOUT)
    if answer["rc"] == 0:
        fail("connection accepted")


{"qos": qos, "share": share, "alias_expiry": alias_expiry, "will": will,
 "retained": retained, "persist": persist, "auth": auth,
 "roundtrip": roundtrip, "refused": refused}[args.scenario]()
print("ok")
