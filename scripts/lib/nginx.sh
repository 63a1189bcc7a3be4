# Fills in config/nginx.conf.
# shellcheck shell=bash

# render_nginx TEMPLATE OUTPUT NAME=VALUE...: writes TEMPLATE with each {{NAME}} replaced.
# Stops if a placeholder is left unfilled.
render_nginx() {
    local template=$1 output=$2 text pair name value
    shift 2
    text=$(<"$template")
    for pair in "$@"; do
        name=${pair%%=*}
        value=${pair#*=}
        text=${text//"{{$name}}"/$value}
    done
    if [[ $text =~ \{\{([A-Z_]+)\}\} ]]; then
        printf 'error: %s: no value for {{%s}}\n' "$template" "${BASH_REMATCH[1]}" >&2
        return 1
    fi
    printf '%s\n' "$text" >"$output"
}
