#!/bin/sh
# Entry point of the Tessera image: the first argument names what to run.
#
#   risk | oms | exchange   the gRPC service (python -m services.<name>)
#   migrate                 bring the database schema to head (python -m services.store)
#   tessera                 the command-line client (tessera submit, orders, ...)
#
# `exec` makes Python PID 1, so the SIGTERM Kubernetes sends reaches the service's own
# handler, which marks it NOT_SERVING and drains in-flight calls before it exits.
set -eu

command="${1:-}"
[ "$#" -gt 0 ] && shift
case "$command" in
    risk | oms | exchange)
        exec python -m "services.$command" "$@"
        ;;
    migrate)
        exec python -m services.store "$@"
        ;;
    tessera)
        exec tessera "$@"
        ;;
    *)
        echo "usage: <image> risk|oms|exchange|migrate|tessera [arguments...]" >&2
        exit 64
        ;;
esac
