#!/bin/sh
# A program that leaves things behind, as test suites do: a daemon that started a session of
# its own, a listening socket on 127.0.0.1, and a temp file. It exits 0 at once.
#
#   closeout run -- crates/closeout-cli/examples/leaky.sh
#
# reports each of them, and removes them.
setsid sleep 300 &
python3 -c '
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
time.sleep(300)
' &
echo scratch > "${TMPDIR:-/tmp}/leaky.tmp"
# Let the listener bind before this script exits.
sleep 0.5
echo "leaky.sh: started a daemon and a listener, wrote a temp file; exiting 0"
