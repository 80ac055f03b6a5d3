#!/bin/bash
# Entrypoint of the local MariaDB and MySQL images (Debian's mariadb-server or mysql-server
# package; docker/mariadb/Dockerfile and docker/mysql/Dockerfile).
#
# Like the official images: on an EMPTY data directory it creates the system tables, sets the root
# password and creates a database and a user from the environment, using a temporary server with
# networking off; then it runs the server in the foreground as the `mysql` user (exec: signals
# reach the server). A data directory that already holds a database is used as it is.
# Which server it is comes from the programs installed: mariadb-install-db means MariaDB.
#
# Environment (MARIADB_* wins over the MYSQL_* alias; *_FILE variants read the value from a file):
#   MARIADB_ROOT_PASSWORD / MYSQL_ROOT_PASSWORD      root password (root@localhost and
#                                                    root@MARIADB_ROOT_HOST, default '%')
#   MARIADB_ALLOW_EMPTY_ROOT_PASSWORD / MYSQL_ALLOW_EMPTY_PASSWORD   root without a password
#   MARIADB_RANDOM_ROOT_PASSWORD / MYSQL_RANDOM_ROOT_PASSWORD        random root password (printed)
#   MARIADB_DATABASE / MYSQL_DATABASE                database to create
#   MARIADB_USER / MYSQL_USER, MARIADB_PASSWORD / MYSQL_PASSWORD
#                                                    user@'%' with ALL on that database
#   /docker-entrypoint-initdb.d/*.sql, *.sql.gz, *.sh run once, after that, in name order.
set -Eeuo pipefail

if command -v mariadb-install-db >/dev/null; then
    SERVER=mariadb SERVERD=mariadbd CLIENT=mariadb
else
    SERVER=mysql SERVERD=mysqld CLIENT=mysql
fi
DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock
IN_PROGRESS="$DATADIR/.docker-init-in-progress"
HEALTHCHECK_CNF="$DATADIR/.my-healthcheck.cnf"

log() { printf '%s [%s] [Entrypoint]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$2" >&2; }
note() { log Note "$*"; }
warn() { log Warn "$*"; }
die() { log ERROR "$*"; exit 1; }

# env_alias NAME ALIAS: NAME (or NAME_FILE) if set, else ALIAS (or ALIAS_FILE), else empty.
env_alias() {
    local name
    for name in "$1" "$2"; do
        local file_var="${name}_FILE"
        if [ -n "${!name:-}" ] && [ -n "${!file_var:-}" ]; then
            die "both $name and $file_var are set; set only one of them"
        fi
        if [ -n "${!name:-}" ]; then
            printf '%s' "${!name}"
            return
        fi
        if [ -n "${!file_var:-}" ]; then
            [ -r "${!file_var}" ] || die "$file_var=${!file_var}: file not readable"
            cat "${!file_var}"
            return
        fi
    done
}

# SQL string literal body: escape backslashes, quotes and newlines.
sql_str() {
    local s=${1//\\/\\\\}
    s=${s//$'\n'/\\n}
    printf '%s' "${s//\'/\\\'}"
}
# SQL identifier body (inside backquotes).
sql_ident() { printf '%s' "${1//\`/\`\`}"; }

# Run a command as mysql when we are root; as ourselves otherwise (`docker run --user`).
as_mysql() {
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=mysql --regid=mysql --init-groups -- "$@"
    else
        "$@"
    fi
}

exec_as_mysql() {
    if [ "$(id -u)" = 0 ]; then
        exec setpriv --reuid=mysql --regid=mysql --init-groups -- "$@"
    fi
    exec "$@"
}

# mysql client to the temporary server, as root.
sql_root() {
    MYSQL_PWD="${ROOT_PASSWORD}" "$CLIENT" --protocol=socket --socket="$SOCKET" --user=root \
        --batch --skip-column-names "$@"
}

temp_server_pid=
stop_temp_server() {
    if [ -n "$temp_server_pid" ] && kill -0 "$temp_server_pid" 2>/dev/null; then
        kill -TERM "$temp_server_pid"
        wait "$temp_server_pid" || true
    fi
    temp_server_pid=
}
on_signal() {
    warn "signal received during initialisation; stopping"
    stop_temp_server
    exit 143
}

validate_env() {
    DATABASE=$(env_alias MARIADB_DATABASE MYSQL_DATABASE)
    USER_NAME=$(env_alias MARIADB_USER MYSQL_USER)
    USER_PASSWORD=$(env_alias MARIADB_PASSWORD MYSQL_PASSWORD)
    ROOT_PASSWORD=$(env_alias MARIADB_ROOT_PASSWORD MYSQL_ROOT_PASSWORD)
    ALLOW_EMPTY=$(env_alias MARIADB_ALLOW_EMPTY_ROOT_PASSWORD MYSQL_ALLOW_EMPTY_PASSWORD)
    RANDOM_ROOT=$(env_alias MARIADB_RANDOM_ROOT_PASSWORD MYSQL_RANDOM_ROOT_PASSWORD)
    ROOT_HOST=${MARIADB_ROOT_HOST:-${MYSQL_ROOT_HOST:-%}}

    if [ -z "$ROOT_PASSWORD" ] && [ -z "$ALLOW_EMPTY" ] && [ -z "$RANDOM_ROOT" ]; then
        die "database is uninitialized and no root password option is set: set MARIADB_ROOT_PASSWORD (or MYSQL_ROOT_PASSWORD), MARIADB_ALLOW_EMPTY_ROOT_PASSWORD or MARIADB_RANDOM_ROOT_PASSWORD"
    fi
    if [ -n "$USER_NAME" ] && [ -z "$USER_PASSWORD" ]; then
        die "MARIADB_USER (or MYSQL_USER) is set to '$USER_NAME' but MARIADB_PASSWORD (or MYSQL_PASSWORD) is not: set it"
    fi
    if [ -z "$USER_NAME" ] && [ -n "$USER_PASSWORD" ]; then
        die "MARIADB_PASSWORD (or MYSQL_PASSWORD) is set but MARIADB_USER (or MYSQL_USER) is not: set it"
    fi
    if [ "$USER_NAME" = root ]; then
        die "MARIADB_USER (or MYSQL_USER) must not be root: root is configured by MARIADB_ROOT_PASSWORD"
    fi
    if [ -z "$ROOT_PASSWORD" ] && [ -n "$RANDOM_ROOT" ]; then
        ROOT_PASSWORD=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true)
        note "GENERATED ROOT PASSWORD: $ROOT_PASSWORD"
    fi
}

init_database() {
    validate_env
    note "initialising an empty data directory ($DATADIR)"
    : >"$IN_PROGRESS"
    trap on_signal TERM INT

    local t0=$SECONDS
    local temp_options
    if [ "$SERVER" = mariadb ]; then
        as_mysql mariadb-install-db --datadir="$DATADIR" --rpm --auth-root-authentication-method=normal \
            --skip-test-db --skip-log-bin --default-time-zone=SYSTEM --skip-name-resolve \
            --expire-logs-days=0 --loose-innodb-buffer-pool-load-at-startup=0 \
            --loose-innodb-buffer-pool-dump-at-shutdown=0 >/dev/null \
            || die "mariadb-install-db failed (see above)"
        temp_options=(--expire-logs-days=0 --loose-innodb-buffer-pool-load-at-startup=0)
    else
        # MySQL accepts a data directory that holds only dot-files, such as $IN_PROGRESS.
        as_mysql mysqld --initialize-insecure --datadir="$DATADIR" --skip-log-bin \
            --default-time-zone=SYSTEM \
            || die "mysqld --initialize-insecure failed (see above)"
        temp_options=(--mysqlx=OFF)
    fi

    note "starting a temporary server (networking off) for initialisation"
    # exec in the subshell: $! must be the server's pid, for stop_temp_server.
    (exec_as_mysql "$SERVERD" --skip-networking --socket="$SOCKET" --skip-log-bin \
        --default-time-zone=SYSTEM "${temp_options[@]}" "${@:2}") &
    temp_server_pid=$!
    local i
    for i in $(seq 1 300); do
        # root has an empty password until the first SQL below sets it.
        if MYSQL_PWD='' "$CLIENT" --protocol=socket --socket="$SOCKET" --user=root \
                -e 'SELECT 1' >/dev/null 2>&1; then
            break
        fi
        kill -0 "$temp_server_pid" 2>/dev/null || die "the temporary server exited during startup (see above)"
        [ "$i" = 300 ] && die "the temporary server did not answer within 60 s"
        sleep 0.2
    done

    local root_pw root_host
    root_pw=$(sql_str "$ROOT_PASSWORD")
    root_host=$(sql_str "$ROOT_HOST")
    local sql="
        SET @@SESSION.SQL_LOG_BIN=0;
        SET @@SESSION.SQL_MODE=REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');"
    if [ "$SERVER" = mariadb ]; then
        sql+="
        DROP USER IF EXISTS root@'127.0.0.1', root@'::1';
        EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\'', @@hostname, '\'');
        SET PASSWORD FOR 'root'@'localhost' = PASSWORD('$root_pw');"
    else
        # MySQL has no PASSWORD() and no EXECUTE IMMEDIATE; --initialize makes only root@localhost.
        sql+="
        ALTER USER 'root'@'localhost' IDENTIFIED BY '$root_pw';"
    fi
    if [ "$ROOT_HOST" != localhost ]; then
        sql+="
        CREATE USER 'root'@'$root_host' IDENTIFIED BY '$root_pw';
        GRANT ALL ON *.* TO 'root'@'$root_host' WITH GRANT OPTION;"
        if [ "$SERVER" = mariadb ]; then
            sql+="
        GRANT PROXY ON ''@'%' TO 'root'@'$root_host' WITH GRANT OPTION;"
        fi
    fi
    MYSQL_PWD='' "$CLIENT" --protocol=socket --socket="$SOCKET" --user=root --batch <<<"$sql" \
        || die "securing the root account failed (see above)"

    if [ -n "$DATABASE" ]; then
        note "creating database $DATABASE"
        sql_root <<<"CREATE DATABASE IF NOT EXISTS \`$(sql_ident "$DATABASE")\`;" \
            || die "creating database $DATABASE failed"
    fi
    if [ -n "$USER_NAME" ]; then
        note "creating user $USER_NAME@'%'"
        local u p
        u=$(sql_str "$USER_NAME")
        p=$(sql_str "$USER_PASSWORD")
        sql="SET @@SESSION.SQL_MODE=REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');
             CREATE USER '$u'@'%' IDENTIFIED BY '$p';"
        if [ -n "$DATABASE" ]; then
            note "granting $USER_NAME access to $DATABASE"
            sql+="GRANT ALL ON \`$(sql_ident "$DATABASE")\`.* TO '$u'@'%';"
        fi
        sql_root <<<"$sql" || die "creating user $USER_NAME failed"
    fi

    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) note "running $f"; . "$f" ;;
            *.sql) note "running $f"; sql_root ${DATABASE:+--database="$DATABASE"} <"$f" || die "$f failed" ;;
            *.sql.gz) note "running $f"; gunzip -c "$f" | sql_root ${DATABASE:+--database="$DATABASE"} || die "$f failed" ;;
            */\*) ;;
            *) warn "ignoring $f" ;;
        esac
    done

    # A USAGE-only account for healthcheck.sh, over TCP from inside the container.
    local hc_pw
    hc_pw=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true)
    sql_root <<<"
        CREATE USER healthcheck@'127.0.0.1' IDENTIFIED BY '$hc_pw';
        CREATE USER healthcheck@'::1' IDENTIFIED BY '$hc_pw';
        CREATE USER healthcheck@'localhost' IDENTIFIED BY '$hc_pw';" \
        || die "creating the healthcheck account failed"

    note "stopping the temporary server"
    stop_temp_server
    trap - TERM INT

    # Last step: from now on healthcheck.sh may report healthy (once the real server listens).
    printf '[client]\nuser=healthcheck\npassword=%s\nprotocol=tcp\nhost=127.0.0.1\nport=3306\n' \
        "$hc_pw" >"$HEALTHCHECK_CNF"
    # MySQL's caching_sha2_password over TCP without TLS needs the server's RSA key.
    [ "$SERVER" = mysql ] && printf 'get-server-public-key=1\n' >>"$HEALTHCHECK_CNF"
    chmod 0600 "$HEALTHCHECK_CNF"
    [ "$(id -u)" = 0 ] && chown mysql:mysql "$HEALTHCHECK_CNF"
    rm -f "$IN_PROGRESS"
    note "initialisation done in $((SECONDS - t0)) s; starting the server"
}

main() {
    # `docker run IMAGE --some-option` means `mariadbd --some-option` (mysqld for MySQL).
    if [ "${1:0:1}" = '-' ]; then
        set -- "$SERVERD" "$@"
    fi
    case "$1" in
        mariadbd | mysqld) ;;
        *) exec "$@" ;;
    esac

    if [ "$(id -u)" = 0 ]; then
        mkdir -p /run/mysqld
        chown mysql:mysql /run/mysqld
        # A fresh bind mount may belong to someone else; a volume from this image is already mysql's.
        find "$DATADIR" -maxdepth 0 \! -user mysql -exec chown mysql:mysql '{}' \;
    fi

    if [ -e "$IN_PROGRESS" ]; then
        die "a previous initialisation of $DATADIR was interrupted; the data directory is incomplete: remove the volume (e.g. docker compose down -v) and start again"
    fi
    if [ -d "$DATADIR/mysql" ]; then
        note "$DATADIR already holds a database: skipping initialisation"
    else
        init_database "$@"
    fi

    exec_as_mysql "$@"
}

main "$@"
