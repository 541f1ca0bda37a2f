#!/usr/bin/env bash
# render.sh TEMPLATE NAME=VALUE...: prints TEMPLATE with every @NAME@
# replaced by VALUE (values may hold any character but a newline; a value
# with several lines is given as NAME=$'a\nb'). Fails, naming them, when
# placeholders are left, so a new one is never shipped half-rendered.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: render.sh TEMPLATE NAME=VALUE..." >&2; exit 2; }
template=$1
shift
text=$(cat "$template")
for kv in "$@"; do
    name=${kv%%=*}
    value=${kv#*=}
    text=${text//@$name@/$value}
done
left=$(printf '%s\n' "$text" | grep -o '@[A-Z_][A-Z_]*@' | sort -u | tr '\n' ' ' || true)
if [ -n "$left" ]; then
    echo "render.sh: $template: no value for $left" >&2
    exit 1
fi
printf '%s\n' "$text"
