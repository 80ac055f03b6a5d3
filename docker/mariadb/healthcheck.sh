#!/bin/sh
# Docker HEALTHCHECK of the local MariaDB and MySQL images.
# Healthy = initialisation finished and the real server answers `SELECT 1` over TCP.
# docker-entrypoint.sh writes .my-healthcheck.cnf (credentials of a USAGE-only account) as the
# last step of initialisation; during initialisation the server has networking off.
datadir=/var/lib/mysql
if command -v mariadb >/dev/null; then
    client=mariadb admin=mariadb-admin
else
    client=mysql admin=mysqladmin
fi
[ -e "$datadir/.docker-init-in-progress" ] && exit 1
if [ -r "$datadir/.my-healthcheck.cnf" ]; then
    exec "$client" --defaults-extra-file="$datadir/.my-healthcheck.cnf" --connect-timeout=2 \
        -e 'SELECT 1' >/dev/null
fi
# A data directory initialised by something else: at least require the TCP port to answer
# (mariadb-admin ping exits 0 even on "access denied").
exec "$admin" --protocol=tcp --host=127.0.0.1 --port=3306 --connect-timeout=2 ping >/dev/null
