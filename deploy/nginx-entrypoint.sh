#!/bin/sh
# Entry point of the proxy container (deploy/docker-compose.yml). It turns the lists
# ADVISOR_ALLOWED_NETWORKS and NGINX_REAL_IP_FROM (addresses or networks, separated by spaces or
# commas) into the directives deploy/nginx-som.conf.template expects, ADVISOR_ACCESS and REAL_IP_FROM,
# exactly as `nginx_access` in ops/runner.py does for the local cluster; then it runs the command it
# is given (the nginx image's own entry point, whose envsubst fills in the template).
set -eu
set -f  # the lists are split on spaces, never expanded as file names

directives() {  # $1 variable name, $2 list, $3 directive: "<directive> <item>; " for each item
    for item in $(printf '%s' "$2" | tr ',' ' '); do
        case "$item" in
            *[!0-9A-Fa-f:./]*)
                echo "$1: '$item' no es una dirección ni una red (p. ej. 10.20.0.0/16)." >&2
                return 1 ;;
        esac
        printf '%s %s; ' "$3" "$item"
    done
}

advisor=$(directives ADVISOR_ALLOWED_NETWORKS "${ADVISOR_ALLOWED_NETWORKS:-}" allow) || exit 1
proxies=$(directives NGINX_REAL_IP_FROM "${NGINX_REAL_IP_FROM:-}" set_real_ip_from) || exit 1
ADVISOR_ACCESS=""
REAL_IP_FROM=""
if [ -n "$advisor" ]; then
    ADVISOR_ACCESS="${advisor}deny all;"
fi
if [ -n "$proxies" ]; then
    REAL_IP_FROM="${proxies}real_ip_header X-Forwarded-For; real_ip_recursive on;"
fi
export ADVISOR_ACCESS REAL_IP_FROM
exec "$@"
