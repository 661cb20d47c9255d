#!/usr/bin/env bash
# usage: scripts/sub-throughput.sh N [MQTK]  — drains N QoS 0 100-byte messages with -v, mqtk sub and mosquitto_sub side by side
set -u
N=${1:-100000}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
D=$(mktemp -d)
MQTK=${2:-mqtk}
cat > $D/m.conf <<C
listener $PORT 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_queued_bytes 0
C
mosquitto -c $D/m.conf >$D/broker.log 2>&1 & BP=$!
sleep 0.5
python3 -c "
import sys
line = ('x'*90)
with open('$D/payload.txt','w') as f:
    for i in range($N):
        f.write('%09d'%i + ' ' + line + '\n')
"
rm -f $D/mqtk.end $D/mosq.end
split -n l/4 -d $D/payload.txt $D/part.
$MQTK sub -h 127.0.0.1 -p $PORT -t 'bench/#' -v -C $N > $D/mqtk.out 2>$D/mqtk.err & MP=$!
mosquitto_sub -h 127.0.0.1 -p $PORT -t 'bench/#' -v -C $N > $D/mosq.out 2>$D/mosq.err & SP=$!
( wait_pid() { while [ -e /proc/$1 ] && ! grep -q "^[0-9]* ([^)]*) Z" /proc/$1/stat 2>/dev/null; do sleep 0.01; done; date +%s.%N; }; wait_pid $MP > $D/mqtk.end ) &
( wait_pid() { while [ -e /proc/$1 ] && ! grep -q "^[0-9]* ([^)]*) Z" /proc/$1/stat 2>/dev/null; do sleep 0.01; done; date +%s.%N; }; wait_pid $SP > $D/mosq.end ) &
( while [ -e /proc/$MP ] && ! grep -q "^[0-9]* ([^)]*) Z" /proc/$MP/stat 2>/dev/null; do awk '/VmRSS/{print $2}' /proc/$MP/status 2>/dev/null; sleep 0.5; done ) > $D/rss.txt &
sleep 1
T0=$(date +%s.%N)
for p in 0 1 2 3; do mosquitto_pub -h 127.0.0.1 -p $PORT -t bench/t$p -l < $D/part.0$p & done
wait $(jobs -p | tail -4) 2>/dev/null
TP=$(date +%s.%N)
while [ ! -s $D/mqtk.end ] || [ ! -s $D/mosq.end ]; do sleep 0.1; done
TM=$(cat $D/mqtk.end); TS=$(cat $D/mosq.end)
kill $BP
python3 - <<P
t0=$T0; tp=$TP; tm=$TM; ts=$TS; n=$N
print(f"publisher: {n/(tp-t0):,.0f} msg/s ({tp-t0:.2f}s)")
print(f"mqtk sub:      done {tm-t0:.2f}s after start -> {n/(tm-t0):,.0f} msg/s")
print(f"mosquitto_sub: done {ts-t0:.2f}s after start -> {n/(ts-t0):,.0f} msg/s")
P
wc -l $D/mqtk.out $D/mosq.out
sort $D/mqtk.out | md5sum; sort $D/mosq.out | md5sum
echo "mqtk RSS kB (min/max over samples):"; sort -n $D/rss.txt | sed -n '1p;$p' | tr '\n' ' '; echo " samples=$(wc -l < $D/rss.txt)"
cp $D/rss.txt /tmp/sub-rss-last.txt; rm -rf "$D"
