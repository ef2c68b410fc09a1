#!/usr/bin/env bash
# Runs inside `unshare -rn`: bring lo up, capture with dumpcap, one daytime exchange on port 13013.
set -eu
ip link set lo up
out=$1
dumpcap -q -i lo -f "tcp port 13013" -w "$out" 2>"${TMPDIR:-/tmp}/daytime-dumpcap.err" &
dpid=$!
for i in $(seq 50); do grep -q "Capturing" "${TMPDIR:-/tmp}/daytime-dumpcap.err" 2>/dev/null && break; sleep 0.1; done
python3 - <<'PY'
import socket, time, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 13013)); srv.listen(10)
def serve():
    c, a = srv.accept(); c.sendall(time.strftime("%Y-%m-%d %H:%M:%S\n").encode()); c.close()
t = threading.Thread(target=serve); t.start()
cl = socket.create_connection(("127.0.0.1", 13013)); data = b""
while chunk := cl.recv(100): data += chunk
cl.close(); t.join(); print(data)
PY
sleep 0.5
kill -INT $dpid; wait $dpid || true
