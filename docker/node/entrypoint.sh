#!/bin/sh
# The node's Docker engine as the container's main process (see Dockerfile).
#
# - /var/lib/docker is a volume of the host: on the host's own filesystem, overlay2 works
#   inside (it does not on the container's overlay root), so images and containers cost no copies;
# - the engine also answers on /node/docker.sock, a directory of the host mounted there: the
#   xtask reaches each node by that socket, and nothing listens on any network address;
# - the node's containers get cgroups under /scaling-node-<hostname>, apart from the host
#   engine's, so the xtask can find and remove them once the node is gone.
set -eu
exec dockerd \
    --host unix:///var/run/docker.sock \
    --host unix:///node/docker.sock \
    --storage-driver overlay2 \
    --cgroup-parent "/scaling-node-$(hostname)" \
    "$@"
