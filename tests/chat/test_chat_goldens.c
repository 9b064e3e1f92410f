// Renders every (template, conversation) and every unit case of tests/fixtures/chat/MANIFEST.tsv
// through the library and compares bytes with the jinja2 goldens made by tools/chat/make_goldens.py.
// Expected-error cases must fail with a message; syntax errors must name the jinja2 line.
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "text/chat.h"

static int failures = 0, passed = 0;

static char *path3(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s/%s", a, b, c);
    return p;
}

static void report_diff(const char *what, const char *want, size_t want_len, const char *got, size_t got_len) {
    size_t i = 0;
    while (i < want_len && i < got_len && want[i] == got[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "FAIL %s: first difference at byte %zu (want %zu bytes, got %zu)\n  want: %.*s\n  got:  %.*s\n", what, i,
            want_len, got_len, (int)((want_len - from) < 120 ? want_len - from : 120), want + from,
            (int)((got_len - from) < 120 ? got_len - from : 120), got + from);
}

static void check(const char *what, char *got, size_t got_len, const char *expected_path, const char *error_path) {
    if (expected_path) {
        size_t want_len;
        char *want = glint_read_text_file(expected_path, &want_len);
        if (!want) { fprintf(stderr, "FAIL %s: cannot read %s\n", what, expected_path); failures++; free(got); return; }
        if (!got) { fprintf(stderr, "FAIL %s: error: %s\n", what, glint_last_error()); failures++; }
        else if (got_len != want_len || memcmp(got, want, want_len) != 0) { report_diff(what, want, want_len, got, got_len); failures++; }
        else passed++;
        free(want);
    } else {
        if (got) { fprintf(stderr, "FAIL %s: jinja2 raised but glint rendered %zu bytes\n", what, got_len); failures++; }
        else if (!glint_last_error()[0]) { fprintf(stderr, "FAIL %s: no error message\n", what); failures++; }
        else {
            // jinja2 syntax errors carry a line: glint's "name:line:col:" must agree
            size_t elen;
            char *expect = glint_read_text_file(error_path, &elen);
            int line;
            if (expect && sscanf(expect, "syntax line %d", &line) == 1) {
                char needle[32];
                snprintf(needle, sizeof needle, ":%d:", line);
                if (!strstr(glint_last_error(), needle)) {
                    fprintf(stderr, "FAIL %s: error should report line %d: %s\n", what, line, glint_last_error());
                    failures++;
                } else passed++;
            } else passed++;
            free(expect);
        }
    }
    free(got);
}

// One parsed template rendered from several threads at once must give the golden every time.
typedef struct {
    const glint_template *tmpl;
    const json_t *request;
    const json_t *special;
    const char *want;
    size_t want_len;
    int mismatches;
} thread_job;

static void *render_many(void *arg) {
    thread_job *job = arg;
    for (int i = 0; i < 25; i++) {
        size_t n;
        char *got = glint_chat_render(job->tmpl, job->request, job->special, &n);
        if (!got || n != job->want_len || memcmp(got, job->want, n) != 0) job->mismatches++;
        free(got);
    }
    return NULL;
}

static void check_threads(const char *root) {
    char *mdir = path3(root, "models", "glm-4.7"), *req_path = path3(root, "requests", "09_tool_calls_roundtrip.json");
    char *want_path = path3(root, "expected", "glm-4.7/09_tool_calls_roundtrip.txt");
    json_t *special = NULL;
    glint_template *t = glint_chat_load_model_template(mdir, &special);
    json_t *req = json_load_file(req_path, 0, NULL);
    size_t want_len = 0;
    char *want = glint_read_text_file(want_path, &want_len);
    if (!t || !req || !want) { fprintf(stderr, "FAIL threads: setup\n"); failures++; }
    else {
        thread_job jobs[4];
        pthread_t th[4];
        for (int i = 0; i < 4; i++) {
            jobs[i] = (thread_job){t, req, special, want, want_len, 0};
            pthread_create(&th[i], NULL, render_many, &jobs[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            if (jobs[i].mismatches) { fprintf(stderr, "FAIL threads: %d mismatches\n", jobs[i].mismatches); failures++; }
            else passed++;
        }
    }
    glint_template_free(t);
    json_decref(req);
    json_decref(special);
    free(want);
    free(mdir);
    free(req_path);
    free(want_path);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s FIXTURES/chat\n", argv[0]); return 2; }
    const char *root = argv[1];
    setenv("GLINT_FIXED_DATE", "2026-03-14 09:26:53", 1);
    char manifest_path[4096];
    snprintf(manifest_path, sizeof manifest_path, "%s/MANIFEST.tsv", root);
    FILE *f = fopen(manifest_path, "r");
    if (!f) { fprintf(stderr, "cannot open %s\n", manifest_path); return 1; }
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char kind[16], tname[256], cname[256], status[16];
        if (sscanf(line, "%15s %255s %255s %15s", kind, tname, cname, status) != 4) continue;
        bool ok = !strcmp(status, "ok");
        char what[600];
        glint_clear_error();
        if (!strcmp(kind, "chat")) {
            snprintf(what, sizeof what, "%s x %s", tname, cname);
            char *mdir = path3(root, "models", tname), *req_path = malloc(strlen(root) + strlen(cname) + 32);
            sprintf(req_path, "%s/requests/%s.json", root, cname);
            char *exp_name = malloc(strlen(cname) + 8);
            sprintf(exp_name, "%s.%s", cname, ok ? "txt" : "error");
            char *exp_dir = path3(root, "expected", tname);
            char *exp_path = glint_path_join(exp_dir, exp_name);
            json_t *special = NULL;
            glint_template *t = glint_chat_load_model_template(mdir, &special);
            json_error_t jerr;
            json_t *req = json_load_file(req_path, 0, &jerr);
            char *got = NULL;
            size_t got_len = 0;
            if (!t || !req) fprintf(stderr, "%s: setup failed: %s\n", what, t ? jerr.text : glint_last_error());
            else got = glint_chat_render(t, req, special, &got_len);
            if (!t || !req) failures++;
            else check(what, got, got_len, ok ? exp_path : NULL, exp_path);
            glint_template_free(t);
            json_decref(req);
            json_decref(special);
            free(mdir); free(req_path); free(exp_name); free(exp_dir); free(exp_path);
        } else {
            snprintf(what, sizeof what, "unit %s", cname);
            char *base = malloc(strlen(root) + strlen(cname) + 32);
            sprintf(base, "%s/unit/%s.jinja", root, cname);
            size_t src_len;
            char *src = glint_read_text_file(base, &src_len);
            sprintf(base, "%s/unit/%s.json", root, cname);
            json_error_t jerr;
            json_t *ctx = json_load_file(base, 0, &jerr);
            sprintf(base, "%s/unit/%s.%s", root, cname, ok ? "txt" : "error");
            char name[300];
            snprintf(name, sizeof name, "%s.jinja", cname);
            char *got = NULL;
            size_t got_len = 0;
            glint_template *t = src ? glint_template_parse(src, src_len, name) : NULL;
            if (t && ctx) got = glint_template_render(t, ctx, &got_len);
            if (!src || !ctx) { fprintf(stderr, "FAIL %s: cannot read fixture\n", what); failures++; free(got); }
            else check(what, got, got_len, ok ? base : NULL, base);
            glint_template_free(t);
            json_decref(ctx);
            free(src);
            free(base);
        }
    }
    fclose(f);
    check_threads(root);
    printf("chat goldens: %d passed, %d failed\n", passed, failures);
    return failures ? 1 : 0;
}
