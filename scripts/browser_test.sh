#!/usr/bin/env bash
# Run the browser tests (pytest -m browser) inside a network namespace that has only
# loopback: the server, Chromium and ICE can then only meet on 127.0.0.1, and nothing
# outside the machine is reachable. Arguments go to pytest.
#   scripts/browser_test.sh                    # with .venv/bin/python
#   PYTHON=/path/to/python scripts/browser_test.sh -x --basetemp=out/browser
# Needs unshare (util-linux) and root, or unprivileged user namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
if [ "$(id -u)" = 0 ]; then
  netns=(unshare --net)
else
  netns=(unshare --net --map-root-user)
fi
# A new namespace's loopback starts down. `ip` (iproute2) may be missing on a slim
# image, so fall back to the same ioctl from Python.
lo_up='ip link set lo up 2>/dev/null || "$0" -c "
import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack(\"16sH14s\", fcntl.ioctl(s, 0x8913, struct.pack(\"16sH14s\", b\"lo\", 0, b\"\")))[1]
fcntl.ioctl(s, 0x8914, struct.pack(\"16sH14s\", b\"lo\", flags | 1, b\"\"))
"'
# Firefox gathers no ICE candidate at all without a default route, and never offers
# loopback ones: give it a veth pair whose two ends are both inside the namespace, with a
# default route into it. Packets sent there go nowhere; the namespace stays sealed.
veth='ip link add rfx0 type veth peer name rfx1 && ip addr add 10.213.0.1/24 dev rfx0 &&
  ip link set rfx1 up && ip link set rfx0 up && ip route add default via 10.213.0.2 dev rfx0 ||
  echo "browser_test.sh: no veth pair (iproute2 missing?): the Firefox test will fail" >&2'
exec "${netns[@]}" -- bash -c "$lo_up"' && '"$veth"' && exec env ROOMFUSE_REQUIRE_BROWSER=1 ROOMFUSE_SEALED_IFACES="rfx0 rfx1" "$0" -m pytest -m browser "$@"' "$py" "$@"
