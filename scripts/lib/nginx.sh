# Fills in config/nginx.conf and config/nginx-plain.conf.
# shellcheck shell=bash

# render_nginx TEMPLATE OUTPUT NAME=VALUE...: writes TEMPLATE with {{HTTP}} and {{PROXY}}
# replaced by nginx-http.conf and nginx-proxy.conf from the template's folder, then each
# {{NAME}} by its VALUE. Stops if a placeholder is left unfilled.
render_nginx() {
    local template=$1 output=$2 text part pair name value
    shift 2
    text=$(<"$template")
    for part in HTTP PROXY; do
        if [[ $text == *"{{$part}}"* ]]; then
            value=$(<"$(dirname "$template")/nginx-${part,,}.conf")
            text=${text//"{{$part}}"/"$value"}
        fi
    done
    for pair in "$@"; do
        name=${pair%%=*}
        value=${pair#*=}
        text=${text//"{{$name}}"/"$value"}
    done
    if [[ $text =~ \{\{([A-Z_]+)\}\} ]]; then
        printf 'error: %s: no value for {{%s}}\n' "$template" "${BASH_REMATCH[1]}" >&2
        return 1
    fi
    printf '%s\n' "$text" >"$output"
}
