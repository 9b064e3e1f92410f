// Jinja2 template interpreter for chat templates (byte-exact with Python jinja2 configured as
// transformers does: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
// extensions=[loopcontrols]), tojson = json.dumps(ensure_ascii=False), raise_exception, strftime_now).
// A parsed template is immutable: several threads may render it at once.
#ifndef GLINT_JINJA_H
#define GLINT_JINJA_H

#include <stddef.h>
#include <jansson.h>

typedef struct glint_template glint_template;

// Parses a template. On failure returns NULL and records "name:line:col: message".
glint_template *glint_template_parse(const char *source, size_t len, const char *name_for_errors);
void glint_template_free(glint_template *tmpl);

// Renders with a JSON object as the context (keys become variables). Returns a malloc'ed,
// NUL-terminated string (its length in *out_len) or NULL + glint_set_error("name:line:col: ...").
char *glint_template_render(const glint_template *tmpl, const json_t *context, size_t *out_len);

// strftime_now() uses the current local time unless GLINT_FIXED_DATE="YYYY-MM-DD[ HH:MM:SS]" is set
// (tests use it to make renders deterministic; tools/chat/make_goldens.py honors the same variable).

#endif
