"""Interop scenarios for mqtk's broker with python paho-mqtt 1.6.1.

usage: paho_interop.py SCENARIO HOST PORT [transport [ws_path]]
Prints "ok" and exits 0 on success; prints the reason and exits 1 otherwise.
Every wait is bounded.
"""
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

scenario, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
transport = sys.argv[4] if len(sys.argv) > 4 else "tcp"
ws_path = sys.argv[5] if len(sys.argv) > 5 else "/mqtt"
TIMEOUT = 15


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


class Conn:
    def __init__(self, cid, version, clean=True, will=None):
        self.version = version
        kw = {"client_id": cid, "protocol": version, "transport": transport}
        if version != mqtt.MQTTv5:
            kw["clean_session"] = clean
        self.c = mqtt.Client(**kw)
        if transport == "websockets":
            self.c.ws_set_options(path=ws_path)
        self.msgs = []
        self.cv = threading.Condition()
        self.granted = None
        self.c.on_message = self._msg
        self.c.on_subscribe = self._sub
        if will:
            self.c.will_set(*will)
        self.connected = threading.Event()
        self.c.on_connect = lambda *a: self.connected.set()
        if version == mqtt.MQTTv5:
            self.c.connect(host, port, 30, clean_start=clean)
        else:
            self.c.connect(host, port, 30)
        self.c.loop_start()
        if not self.connected.wait(TIMEOUT):
            fail(cid + " did not connect")

    def _msg(self, c, u, m):
        with self.cv:
            self.msgs.append(m)
            self.cv.notify_all()

    def _sub(self, c, u, mid, granted, *rest):
        with self.cv:
            self.granted = granted
            self.cv.notify_all()

    def subscribe(self, topic, qos):
        self.granted = None
        self.c.subscribe(topic, qos)
        with self.cv:
            if not self.cv.wait_for(lambda: self.granted is not None, TIMEOUT):
                fail("no SUBACK for " + topic)
        return self.granted

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
    c = Conn("paho-willer", mqtt.MQTTv311, will=("paho/will", "gone", 1, True))
    print("READY", flush=True)
    time.sleep(60)


{"qos": qos, "share": share, "alias_expiry": alias_expiry, "will": will}[scenario]()
print("ok")
