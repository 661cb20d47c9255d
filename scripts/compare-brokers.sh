#!/usr/bin/env bash
# compare-brokers.sh: mqtk broker against Debian's mosquitto, side by side on
# this machine, driven by the same `mqtk bench` runs (issue 8).
#
# Usage: scripts/compare-brokers.sh
# Environment:
#   MQTK=/path/to/mqtk   binary to test (default: go build ./cmd/mqtk into a temp dir)
#   ROUNDS=3             rounds; each scenario runs mosquitto then mqtk in every round
#   DUR=5s WARMUP=1s     measured phase and warm-up of each bench run
#   CONNS=10000          idle connections for the memory scenario
#   P2P_PAIRS=100        publisher/subscriber pairs in the point-to-point scenario
#   MQTK_BROKER_ARGS=""  extra flags for `mqtk broker` (e.g. "--max-queued 1024")
#   PPROF_PORT=N         also serve mqtk broker's /debug/pprof on 127.0.0.1:N
#   KEEP=1               keep the work directory (bench JSON reports, broker logs)
#   ONLY=a,b             run only the named scenarios (e.g. ONLY=fanin-q1,p2p-q1)
#
# Both brokers listen on free loopback ports, keep nothing on disk and let
# anyone connect. mosquitto gets max_queued_messages 1000000 (default 1000) so
# that a slow QoS 1 subscriber's queue is not cut short and counted as loss;
# mqtk broker gets the same for the same reason, as far as its flag goes
# (--max-inflight 65535, default 1000), plus $MQTK_BROKER_ARGS. The bench runs on
# the same machine as the broker, so the figures are for "bench and broker
# sharing the cores", which is how the issue's targets are stated.
#
# The table shows the median over rounds per scenario and the ratio
# mqtk/mosquitto (throughput: higher is better; latency and RSS: lower is better).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DUR=${DUR:-5s}
WARMUP=${WARMUP:-1s}
CONNS=${CONNS:-10000}
P2P_PAIRS=${P2P_PAIRS:-100}
MQTK_BROKER_ARGS=${MQTK_BROKER_ARGS:-}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare-brokers.XXXXXX")
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	PIDS=()
	if [ "${KEEP:-0}" = 1 ]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

log() { echo "compare-brokers: $*" >&2; }

command -v mosquitto >/dev/null || { log "mosquitto not found; install Debian's mosquitto package"; exit 1; }

if [ -z "${MQTK:-}" ]; then
	here=$(cd "$(dirname "$0")/.." && pwd)
	log "building mqtk from $here"
	(cd "$here" && go build -o "$WORK/mqtk" ./cmd/mqtk)
	MQTK=$WORK/mqtk
fi
[ -x "$MQTK" ] || { log "MQTK=$MQTK is not an executable"; exit 1; }

# 10,000 connections need 10,000 descriptors in the broker and in the bench.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then ulimit -n 1048576 || true; else ulimit -n "$hard"; fi
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 200)) ]; then
	log "open-file limit $(ulimit -n) is below CONNS+200 ($((CONNS + 200))); raise the hard limit or lower CONNS"
	exit 1
fi

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port pid
	local i
	for i in $(seq 1 100); do
		kill -0 "$2" 2>/dev/null || return 1
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	return 1
}

stop_pid() {
	local p=$1 keep=() q
	kill "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
	PIDS=("${keep[@]+"${keep[@]}"}")
}

# start_broker NAME: sets BPID and BPORT
start_broker() {
	BPORT=$(free_port)
	case $1 in
	mosquitto)
		cat >"$WORK/mosquitto.conf" <<-EOF
			listener $BPORT 127.0.0.1
			allow_anonymous true
			persistence false
			max_queued_messages 1000000
		EOF
		mosquitto -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
		;;
	mqtk)
		local extra=()
		[ -n "${PPROF_PORT:-}" ] && extra=(--http "127.0.0.1:$PPROF_PORT" --pprof)
		# shellcheck disable=SC2086 # MQTK_BROKER_ARGS is a list of flags
		"$MQTK" broker --color never --listen "tcp://127.0.0.1:$BPORT" --max-inflight 65535 "${extra[@]+"${extra[@]}"}" $MQTK_BROKER_ARGS >>"$WORK/mqtk-broker.log" 2>&1 &
		;;
	esac
	BPID=$!
	PIDS+=("$BPID")
	wait_port "$BPORT" "$BPID" || { log "$1 did not start; its log:"; cat "$WORK/$1"*.log >&2; exit 1; }
}

# Scenarios: name|metric|bench arguments. The metric names the field that
# summarise() takes from each report.
SCENARIOS=(
	"fanin-q0|recv|pubsub -c 10 --subscribers 1 -s 100 -q 0"
	"fanin-q1|recv|pubsub -c 10 --subscribers 1 -s 100 -q 1"
	"fanout-q0|recv|pubsub -c 1 --subscribers 100 -s 100 -q 0"
	"p2p-q1|recv|p2p"
	"fanin-16k-q0|recv|pubsub -c 10 --subscribers 1 -s 16384 -q 0"
	"sched-10k-q1|lat|pubsub -c 10 --subscribers 1 -s 100 -q 1 --rate 10000"
	"conn-idle|rss|conn"
)
if [ -n "${ONLY:-}" ]; then
	picked=()
	for s in "${SCENARIOS[@]}"; do
		case ",$ONLY," in *",${s%%|*},"*) picked+=("$s") ;; esac
	done
	[ ${#picked[@]} -gt 0 ] || { log "ONLY=$ONLY names no scenario"; exit 2; }
	SCENARIOS=("${picked[@]}")
fi

# run_one SCENARIO_ARGS BROKER PORT PID OUT
run_one() {
	local args=$1 broker=$2 port=$3 bpid=$4 out=$5 url="mqtt://127.0.0.1:$3"
	case $args in
	p2p)
		# mqtk bench's subscribers take every publisher's messages (the topic's
		# placeholders become +), so P2P_PAIRS pairs on their own topics are
		# P2P_PAIRS bench processes, each one publisher and one subscriber on
		# a fixed topic; their rates are summed.
		local i ps=()
		for i in $(seq 1 "$P2P_PAIRS"); do
			"$MQTK" bench pubsub --color never -L "$url" -c 1 --subscribers 1 -s 100 -q 1 \
				-t "mqtk/p2p/$i" -d "$DUR" --warmup 2s --drain-timeout 2s -F json >"$out.$i" 2>>"$WORK/bench.log" &
			ps+=($!)
			PIDS+=($!)
		done
		for i in "${ps[@]}"; do stop_wait "$i"; done
		"$PY" - "$out" "$P2P_PAIRS" <<-'EOF'
			import json, sys
			out, n = sys.argv[1], int(sys.argv[2])
			tot = {"recv": 0.0, "sent": 0.0, "lost": 0, "expected": 0, "ok": 0}
			for i in range(1, n + 1):
			    try:
			        d = json.load(open(f"{out}.{i}"))
			    except Exception:
			        continue
			    tot["ok"] += 1
			    tot["recv"] += d["receive"]["msgs_per_s"]
			    tot["sent"] += d["publish"]["msgs_per_s"]
			    tot["lost"] += d["receive"]["lost"]
			    tot["expected"] += d["receive"]["expected"]
			json.dump({"p2p": tot}, open(out, "w"))
		EOF
		;;
	conn)
		"$MQTK" bench conn --color never -L "$url" -c "$CONNS" --conn-rate 2000 -V 311 -d "$DUR" -F json >"$out" 2>>"$WORK/bench.log" &
		local cpid=$! max=0 kb
		PIDS+=("$cpid")
		while kill -0 "$cpid" 2>/dev/null; do
			kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$bpid/status" 2>/dev/null || echo 0)
			[ "${kb:-0}" -gt "$max" ] && max=$kb
			sleep 0.25
		done
		stop_wait "$cpid"
		echo "$max" >"$out.rss"
		;;
	*)
		# shellcheck disable=SC2086 # $args is a list of flags
		"$MQTK" bench $args --color never -L "$url" -d "$DUR" --warmup "$WARMUP" --drain-timeout 2s -F json >"$out" 2>>"$WORK/bench.log" &
		# in the background and waited for, so that Ctrl-C reaches the trap
		# at once: bench itself stops cleanly on SIGINT and exits normally,
		# and bash does not act on a SIGINT its foreground child handled
		PIDS+=($!)
		stop_wait "$!"
		;;
	esac
}

stop_wait() { # wait for a child we started and forget it
	local p=$1 keep=() q
	wait "$p" 2>/dev/null || true
	for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
	PIDS=("${keep[@]+"${keep[@]}"}")
}

log "mqtk: $MQTK ($("$MQTK" version 2>/dev/null | head -1)); $(mosquitto -h 2>/dev/null | head -1)"
log "rounds=$ROUNDS duration=$DUR warmup=$WARMUP conns=$CONNS p2p_pairs=$P2P_PAIRS; nproc=$(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A PORT PID
for b in mosquitto mqtk; do
	start_broker "$b"
	PORT[$b]=$BPORT
	PID[$b]=$BPID
done

for r in $(seq 1 "$ROUNDS"); do
	for s in "${SCENARIOS[@]}"; do
		IFS='|' read -r name _ args <<<"$s"
		for b in mosquitto mqtk; do
			if [ "$args" = conn ]; then
				# a fresh broker, so RSS is that of idle connections and not
				# of what the throughput runs left behind
				start_broker "$b"
				run_one conn "$b" "$BPORT" "$BPID" "$WORK/r$r.$name.$b.json"
				stop_pid "$BPID"
			else
				run_one "$args" "$b" "${PORT[$b]}" "${PID[$b]}" "$WORK/r$r.$name.$b.json"
			fi
			log "round $r $name $b done"
		done
	done
done

log "load after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" - "$WORK" "$ROUNDS" "${SCENARIOS[@]}" <<'EOF'
import json, os, statistics, sys

work, rounds, scen = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
brokers = ["mosquitto", "mqtk"]

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return None

def values(name, kind, b, r):
    """The figures one report yields: {column: value}, plus lost messages."""
    p = f"{work}/r{r}.{name}.{b}.json"
    d = load(p)
    if kind == "rss":
        try:
            kb = int(open(p + ".rss").read())
        except Exception:
            return {}, None
        ok = d["connect"]["ok"] if d else 0
        return {"RSS MB": kb / 1024, "connected": ok}, None
    if d is None:
        return {}, None
    if "p2p" in d:
        t = d["p2p"]
        return {"recv msg/s": t["recv"], "pairs ok": t["ok"]}, t["lost"]
    rc = d.get("receive", {})
    v = {"recv msg/s": rc.get("msgs_per_s", float("nan"))}
    if kind == "lat":
        e = rc.get("e2e_latency_ms", {})
        v = {"e2e p50 ms": e.get("p50"), "e2e p99 ms": e.get("p99"),
             "e2e p99.9 ms": e.get("p99_9"), "recv msg/s": v["recv msg/s"],
             "overruns": d["publish"].get("overruns", 0)}
    return v, rc.get("lost")

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")

def fmt(x):
    if x != x:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"

print("per-round figures (mosquitto | mqtk):")
rows = []
for s in scen:
    name, kind, _ = s.split("|", 2)
    per = {b: [values(name, kind, b, r) for r in range(1, rounds + 1)] for b in brokers}
    cols = []
    for b in brokers:
        for v, _ in per[b]:
            for c in v:
                if c not in cols:
                    cols.append(c)
    for c in cols:
        line = {b: [v.get(c) for v, _ in per[b]] for b in brokers}
        print(f"  {name:13} {c:13} " + " | ".join(
            " ".join(fmt(x) if x is not None else "n/a" for x in line[b]) for b in brokers))
        if c in ("pairs ok", "connected", "overruns"):
            continue
        m = {b: med(line[b]) for b in brokers}
        ratio = m["mqtk"] / m["mosquitto"] if m["mosquitto"] else float("nan")
        rows.append((name, c, m["mosquitto"], m["mqtk"], ratio))
    lost = {b: [l for _, l in per[b] if l is not None] for b in brokers}
    if kind != "rss":
        print(f"  {name:13} {'lost':13} " + " | ".join(" ".join(str(x) for x in lost[b]) or "n/a" for b in brokers))

print()
print(f"medians of {rounds} rounds; ratio = mqtk/mosquitto (msg/s: higher is better; ms and MB: lower is better)")
print()
print(f"| {'scenario':13} | {'figure':13} | {'mosquitto':>11} | {'mqtk':>11} | {'ratio':>6} |")
print(f"|{'-'*15}|{'-'*15}|{'-'*13}|{'-'*13}|{'-'*8}|")
for name, c, a, b, ratio in rows:
    print(f"| {name:13} | {c:13} | {fmt(a):>11} | {fmt(b):>11} | {ratio:6.2f} |")
EOF
