#!/usr/bin/env bash
# Makes the small symbol fonts in web/src/fonts/ from Debian's Noto fonts: the glyphs agents
# draw (Claude Code's ⏺ ⎿ ⏸ ⏵ ⧉) that the usual monospace fonts of phones and Linux lack.
# Run once when the glyph list changes; the output is committed. Needs fonts-noto-core and
# python3-fonttools and python3-brotli.
set -euo pipefail
cd "$(dirname "$0")/../web/src/fonts"
noto=/usr/share/fonts/truetype/noto
for need in "$noto/NotoSansSymbols2-Regular.ttf" "$noto/NotoSansSymbols-Regular.ttf" "$noto/NotoSansMath-Regular.ttf"; do
    [ -f "$need" ] || { echo "missing $need: apt-get install fonts-noto-core" >&2; exit 1; }
done
subset() {
    /usr/bin/python3 -m fontTools.subset "$noto/$1" --unicodes="$2" --flavor=woff2 --output-file="$3" --no-hinting --desubroutinize --layout-features='' --name-IDs='*'
}
# Keep the ranges in step with the @font-face rules in web/src/style.css.
subset NotoSansSymbols2-Regular.ttf U+23E9-23FA symbols-media.woff2
subset NotoSansSymbols-Regular.ttf U+23BE-23BF symbols-brackets.woff2
subset NotoSansMath-Regular.ttf U+29C9 symbols-math.woff2
ls -l ./*.woff2
