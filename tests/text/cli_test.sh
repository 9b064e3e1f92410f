#!/usr/bin/env bash
# Command-line contract of `glint tokenize` / `glint detokenize` (DESIGN.md §6), checked against
# outputs of Hugging Face tokenizers stored in tests/fixtures/tokenizer/cli by make_references.py.
# Usage: cli_test.sh GLINT FIXTURES_TOKENIZER_DIR
set -u
GLINT=$1
FIX=$2
MODEL=$FIX/glm5-style
CLI=$FIX/cli
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failed=0
passed=0

check() {  # check NAME COMMAND...: the command must succeed
    if "${@:2}"; then passed=$((passed + 1)); else echo "FAIL: $1"; failed=$((failed + 1)); fi
}

# expect_error NAME STDIN_FILE ARGS...: exit status 1, exactly one non-empty line on stderr, no stdout
expect_error() {
    local name=$1 input=$2
    shift 2
    "$GLINT" "$@" <"$input" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    local lines
    lines=$(wc -l <"$TMP/err")
    if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && [ -s "$TMP/err" ] && [ ! -s "$TMP/out" ]; then
        passed=$((passed + 1))
    else
        echo "FAIL: $name (rc=$rc, stderr lines=$lines)"; cat "$TMP/err"; failed=$((failed + 1))
    fi
    cp "$TMP/err" "$TMP/last_err"
}

"$GLINT" tokenize -m "$MODEL" <"$CLI/input.txt" >"$TMP/ids" 2>"$TMP/err"
check "tokenize -m DIR" cmp -s "$TMP/ids" "$CLI/ids.txt"
"$GLINT" tokenize --tokenizer "$MODEL/tokenizer.json" --add-special-tokens <"$CLI/input.txt" >"$TMP/ids_special"
check "tokenize --tokenizer FILE --add-special-tokens" cmp -s "$TMP/ids_special" "$CLI/ids_special.txt"
"$GLINT" detokenize -m "$MODEL" <"$CLI/ids_special.txt" >"$TMP/text"
check "detokenize (no extra newline)" cmp -s "$TMP/text" "$CLI/decoded.txt"
"$GLINT" detokenize --tokenizer "$MODEL/tokenizer.json" --skip-special-tokens <"$CLI/ids_special.txt" >"$TMP/text_skip"
check "detokenize --skip-special-tokens" cmp -s "$TMP/text_skip" "$CLI/decoded_skip.txt"
"$GLINT" detokenize -m "$MODEL" <"$CLI/ids.txt" >"$TMP/roundtrip"
check "tokenize | detokenize round trip" cmp -s "$TMP/roundtrip" "$CLI/input.txt"
printf '' | "$GLINT" tokenize -m "$MODEL" >"$TMP/empty"
check "empty input gives an empty line" cmp -s "$TMP/empty" <(printf '\n')

printf 'ok \xc3\x28 bad' >"$TMP/bad_utf8"
expect_error "invalid UTF-8" "$TMP/bad_utf8" tokenize -m "$MODEL"
check "invalid UTF-8 names the offset" grep -q "offset 3" "$TMP/last_err"
printf '5 999999999\n' >"$TMP/unknown"
expect_error "unknown id" "$TMP/unknown" detokenize -m "$MODEL"
check "unknown id is named" grep -q "999999999" "$TMP/last_err"
printf '5 -1\n' >"$TMP/negative"
expect_error "negative id" "$TMP/negative" detokenize -m "$MODEL"
printf '5 abc\n' >"$TMP/word"
expect_error "non-numeric id" "$TMP/word" detokenize -m "$MODEL"
expect_error "missing model dir" "$CLI/input.txt" tokenize -m "$TMP/no-such-dir"
check "missing file is named" grep -q "no-such-dir/tokenizer.json" "$TMP/last_err"
printf '{\n  "model": {"type": "BPE",\n    "vocab": {"a": 0,, "b": 1}}}\n' >"$TMP/malformed.json"
expect_error "malformed tokenizer.json" "$CLI/input.txt" tokenize --tokenizer "$TMP/malformed.json"
check "malformed JSON reports line:column" grep -q "malformed.json:3:" "$TMP/last_err"
expect_error "no tokenizer option" "$CLI/input.txt" tokenize
expect_error "both options" "$CLI/input.txt" tokenize -m "$MODEL" --tokenizer "$MODEL/tokenizer.json"
expect_error "unknown option" "$CLI/input.txt" detokenize -m "$MODEL" --bogus

echo "cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
