// glint serve: shared server state and the seam between HTTP plumbing (http.c) and the
// OpenAI-compatible API (api.c).
#ifndef GLINT_SERVER_H
#define GLINT_SERVER_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "model/glm.h"
#include "server/buf.h"
#include "text/chat.h"
#include "text/tokenizer.h"

enum { GLINT_ROUTE_CHAT, GLINT_ROUTE_COMPLETIONS, GLINT_ROUTE_MODELS, GLINT_ROUTE_HEALTH, GLINT_ROUTE_TOKENIZE,
       GLINT_ROUTE_DETOKENIZE, GLINT_ROUTE_METRICS, GLINT_ROUTE_OTHER, GLINT_ROUTE_COUNT };

typedef struct {
    // Configuration (from the command line).
    const char *host;
    int port;
    const char *api_key;            // NULL: no auth
    const char *served_model_name;  // echoed in /v1/models
    const char *model_path;
    int context_length;
    int reasoning_parser;  // --reasoning-parser glm45 given
    int tool_parser;       // --tool-call-parser glm47 given
    size_t max_body_bytes;
    int max_connections;
    int idle_timeout;  // seconds a connection may wait without a request (reading one, or kept alive)

    // Loaded once, read-only while serving.
    glint_model *model;
    glint_tokenizer *tok;
    glint_template *tmpl;
    json_t *special_tokens;
    glint_sampling_params defaults;  // generation_config.json over OpenAI defaults
    int32_t marker_ids[16];          // parser tags kept in the text even with skip_special_tokens
    int n_marker_ids;
    glint_engine *engine;
    time_t created;

    atomic_int active_requests;  // being answered now (idle keep-alive connections excluded)

    // Metrics.
    atomic_ullong http_requests[GLINT_ROUTE_COUNT][6];  // by route and status class (1xx..5xx, other)
} glint_server;

// "Is the client still there?" callback given by the HTTP layer.
typedef int (*glint_client_gone_fn)(void *arg);

typedef struct glint_api_stream glint_api_stream;

typedef struct {
    int status;
    glint_buf body;
    const char *content_type;
    glint_api_stream *stream;  // SSE: body comes from glint_api_stream_read
    int route;
} glint_api_response;

void glint_api_dispatch(glint_server *s, const char *method, const char *path, const char *content_type,
                        const char *authorization, const char *body, size_t len, int body_too_large,
                        glint_client_gone_fn gone, void *gone_arg, glint_api_response *out);
// Next bytes of an SSE stream: > 0 bytes written, 0 at the end, -1 when the client is gone.
ssize_t glint_api_stream_read(glint_api_stream *st, char *buf, size_t max, glint_client_gone_fn gone, void *gone_arg);
void glint_api_stream_free(glint_api_stream *st);

// Runs the HTTP server until SIGINT/SIGTERM. Returns the exit status.
int glint_http_serve(glint_server *s);

#endif
