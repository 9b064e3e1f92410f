// HTTP plumbing for glint serve (libmicrohttpd, one thread per connection). Each connection
// thread parses its request, queues work for the engine thread and waits for the results,
// watching its socket so a client that goes away cancels its request at once.
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/server.h"

typedef struct {
    glint_server *s;
    glint_buf body;
    int too_large;
    int fd;
    int active;  // counted in s->active_requests until the answer is sent
} connection_state;

typedef struct {
    glint_api_stream *stream;
    int fd;
} stream_state;

// The peer closed (or reset) the connection: poll reports a hang-up without consuming data.
static int client_gone(void *arg) {
    int fd = *(const int *)arg;
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) return 1;
    return 0;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_state *ss = cls;
    ssize_t n = glint_api_stream_read(ss->stream, buf, max, client_gone, &ss->fd);
    if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (n == 0) return MHD_CONTENT_READER_END_OF_STREAM;
    return n;
}

static void stream_free(void *cls) {
    stream_state *ss = cls;
    glint_api_stream_free(ss->stream);  // cancels whatever is still running
    free(ss);
}

static void count_status(glint_server *s, int route, int status) {
    int cls = status >= 100 && status < 600 ? status / 100 - 1 : 5;
    if (route < 0 || route >= GLINT_ROUTE_COUNT) route = GLINT_ROUTE_OTHER;
    atomic_fetch_add(&s->http_requests[route][cls], 1);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
    (void)version;
    glint_server *s = cls;
    connection_state *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        cs->s = s;
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        cs->fd = info ? info->connect_fd : -1;
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!cs->too_large && cs->body.len + *upload_data_size <= s->max_body_bytes)
            glint_buf_append(&cs->body, upload_data, *upload_data_size);
        else {
            cs->too_large = 1;
            glint_buf_free(&cs->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!cs->active) {
        cs->active = 1;
        atomic_fetch_add(&s->active_requests, 1);
        // The request is in: while it is answered, only a client that stops reading for 10 minutes (or
        // the idle limit, if longer) is dropped; request_completed sets the idle limit again.
        MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  s->idle_timeout > 600 ? (unsigned)s->idle_timeout : 600u);
    }
    const char *content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    glint_api_response out;
    glint_api_dispatch(s, method, url, content_type, auth, cs->body.data, cs->body.len, cs->too_large, client_gone,
                       &cs->fd, &out);
    struct MHD_Response *response;
    if (out.stream) {
        stream_state *ss = calloc(1, sizeof *ss);
        if (!ss) {
            glint_api_stream_free(out.stream);
            glint_buf_free(&out.body);
            return MHD_NO;
        }
        ss->stream = out.stream;
        ss->fd = cs->fd;
        response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, ss, stream_free);
        if (!response) {
            stream_free(ss);
            glint_buf_free(&out.body);
            return MHD_NO;
        }
        MHD_add_response_header(response, "Cache-Control", "no-cache");
        MHD_add_response_header(response, "X-Accel-Buffering", "no");
    } else {
        response = MHD_create_response_from_buffer(out.body.len, out.body.data ? out.body.data : (void *)"",
                                                   MHD_RESPMEM_MUST_COPY);
        if (!response) {
            glint_buf_free(&out.body);
            return MHD_NO;
        }
    }
    if (out.content_type) MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, out.content_type);
    count_status(s, out.route, out.status);
    // 499 (client closed) cannot be delivered; answer it anyway so MHD closes cleanly.
    enum MHD_Result result = MHD_queue_response(conn, (unsigned)out.status, response);
    MHD_destroy_response(response);
    glint_buf_free(&out.body);
    return result;
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)toe;
    connection_state *cs = *con_cls;
    if (!cs) return;
    // kept alive: back to the idle limit until the next request is in
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)cs->s->idle_timeout);
    if (cs->active) atomic_fetch_sub(&cs->s->active_requests, 1);
    glint_buf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

int glint_http_serve(glint_server *s) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *addr = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    int rc = getaddrinfo(s->host, port, &hints, &addr);
    if (rc || !addr) {
        fprintf(stderr, "glint serve: --host %s: %s\n", s->host, gai_strerror(rc));
        return 1;
    }
    // Signals are taken by this thread only (sigwait below); every other thread inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    // "localhost" may resolve to ::1 first; clients mostly dial 127.0.0.1, so IPv4 wins a tie.
    struct addrinfo *chosen = addr;
    for (struct addrinfo *a = addr; a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            chosen = a;
            break;
        }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (chosen->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)s->port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, chosen->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)s->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->idle_timeout, MHD_OPTION_END);
    freeaddrinfo(addr);
    if (!d) {
        fprintf(stderr, "glint serve: cannot listen on %s:%d (in use, or not an address of this machine)\n", s->host,
                s->port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "glint serve: %s listening on http://%s:%u\n", s->served_model_name, s->host,
            info ? info->port : (unsigned)s->port);
    int sig = 0;
    sigwait(&signals, &sig);
    fprintf(stderr, "glint serve: signal %d, shutting down\n", sig);
    // Stop accepting, abort running work so the connections waiting on it get their (aborted)
    // answers, give them a few seconds to be sent, then stop HTTP.
    MHD_socket listener = MHD_quiesce_daemon(d);
    glint_engine_shutdown(s->engine);
    for (int waited = 0; waited < 500 && atomic_load(&s->active_requests) > 0; waited++) usleep(10 * 1000);
    MHD_stop_daemon(d);
    if (listener != MHD_INVALID_SOCKET) close(listener);
    return 0;
}
