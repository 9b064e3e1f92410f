#!/bin/sh
# Drives `glint render-chat -m DIR` over every (template, conversation) golden and checks the CLI
# error contract: exit 1 with one message on stderr for jinja2 errors, bad JSON and bad templates.
GLINT=$1
FIX=$2
export GLINT_FIXED_DATE="2026-03-14 09:26:53"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
bad() { echo "FAIL: $*" >&2; fail=$((fail + 1)); }

while IFS="$(printf '\t')" read -r kind model conv status; do
    [ "$kind" = chat ] || continue
    "$GLINT" render-chat -m "$FIX/models/$model" < "$FIX/requests/$conv.json" > "$TMP/out" 2> "$TMP/err"
    rc=$?
    if [ "$status" = ok ]; then
        if [ $rc -ne 0 ]; then bad "$model x $conv: exit $rc: $(cat "$TMP/err")"
        elif ! cmp -s "$TMP/out" "$FIX/expected/$model/$conv.txt"; then bad "$model x $conv: output differs"
        else pass=$((pass + 1)); fi
    else
        if [ $rc -ne 1 ]; then bad "$model x $conv: jinja2 raised, glint exit $rc"
        elif [ ! -s "$TMP/err" ] || [ "$(wc -l < "$TMP/err")" -ne 1 ]; then bad "$model x $conv: want one error line"
        else pass=$((pass + 1)); fi
    fi
done < "$FIX/MANIFEST.tsv"

# --template FILE works too (no special tokens there).
"$GLINT" render-chat --template "$FIX/models/qwen3/chat_template.jinja" < "$FIX/requests/01_hello.json" > "$TMP/out" 2> "$TMP/err" \
    && cmp -s "$TMP/out" "$FIX/expected/qwen3/01_hello.txt" && pass=$((pass + 1)) || bad "--template qwen3"

# Malformed request JSON: line:column on stderr, exit 1.
printf '{"messages": [\n  {"role": "user",, }]}' | "$GLINT" render-chat -m "$FIX/models/qwen3" > "$TMP/out" 2> "$TMP/err"
rc=$?
{ [ $rc -eq 1 ] && grep -q "line 2 column" "$TMP/err"; } && pass=$((pass + 1)) || bad "malformed JSON: rc=$rc $(cat "$TMP/err")"

# Empty stdin, non-object request, missing messages.
for input in '' '[1,2]' '{"tools": []}' '{"messages": "x"}'; do
    printf '%s' "$input" | "$GLINT" render-chat -m "$FIX/models/glm-4.7" > "$TMP/out" 2> "$TMP/err"
    rc=$?
    { [ $rc -eq 1 ] && [ -s "$TMP/err" ]; } && pass=$((pass + 1)) || bad "bad request '$input': rc=$rc"
done

# Template syntax error: name:line:col.
printf 'ok\n{%% if messages %%}\n{{ messages[0] + }}\n{%% endif %%}' > "$TMP/bad.jinja"
echo '{"messages": []}' | "$GLINT" render-chat --template "$TMP/bad.jinja" > "$TMP/out" 2> "$TMP/err"
rc=$?
{ [ $rc -eq 1 ] && grep -q "bad.jinja:3:" "$TMP/err"; } && pass=$((pass + 1)) || bad "syntax error location: rc=$rc $(cat "$TMP/err")"

# Usage errors and a missing model directory.
"$GLINT" render-chat < /dev/null > "$TMP/out" 2> "$TMP/err"; [ $? -eq 1 ] && pass=$((pass + 1)) || bad "no arguments"
"$GLINT" render-chat -m "$TMP/nope" < /dev/null > "$TMP/out" 2> "$TMP/err"; [ $? -eq 1 ] && pass=$((pass + 1)) || bad "missing dir"

echo "render-chat CLI: $pass passed, $fail failed"
[ $fail -eq 0 ]
