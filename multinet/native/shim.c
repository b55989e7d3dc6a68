/*
 * multinet's native CNI shim: the fast path of multinet/shim.py in C.
 *
 * The runtime executes this for every pod. It frames the CNI call (the CNI_*
 * variables and stdin) as docs/protocol.md describes, sends it over the
 * daemon's unix socket and prints the answer. A Python interpreter costs tens of
 * milliseconds to start; this costs about one.
 *
 * Everything beyond the fast path is left to the Python shim, which this program
 * executes in its own place with the same stdin (FALLBACK, set at build time):
 * VERSION, a daemon that cannot be reached (waiting, running the engine
 * in-process, code 11), a config that is not plain ASCII, a DEL whose answer
 * never came; and --version and --help, before stdin is read. So both shims
 * always behave the same.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef FALLBACK
#error "build with -DFALLBACK='\"/path/to/python/shim/launcher\"'"
#endif

#define DEFAULT_SOCKET "/run/multinet/multinet.sock"
#define MAX_FRAME (16u << 20)

/* Kept equal to multinet.cni.version.SUPPORTED_VERSIONS (a unit test checks). */
static const char *const SUPPORTED[] = {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0",
                                         "1.1.0"};

static int supported(const char *version)
{
    for (size_t i = 0; i < sizeof SUPPORTED / sizeof *SUPPORTED; i++)
        if (!strcmp(version, SUPPORTED[i]))
            return 1;
    return 0;
}

extern char **environ;

struct buf {
    char *data;
    size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown)
            exit(1);
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* A JSON string literal of s (ASCII only: the caller checked), escaped as Python's
 * json.dumps does, so both shims send the same bytes: a tab is 2 bytes, not 6. */
static void put_json_string(struct buf *b, const char *s, size_t n)
{
    static const char shorts[] = "\b\t\n\f\r", letters[] = "btnfr";
    char esc[8];
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *short_at = c ? memchr(shorts, c, sizeof shorts - 1) : NULL;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(b, esc, 2);
        } else if (short_at) {
            esc[0] = '\\';
            esc[1] = letters[short_at - shorts];
            put(b, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(b, esc, 6);
        } else {
            put(b, (const char *)&s[i], 1);
        }
    }
    put(b, "\"", 1);
}

/* Hand the call to the Python shim, stdin and all. Never returns. */
static void fall_back(const struct buf *in)
{
    int fd = memfd_create("multinet-stdin", 0);
    if (fd >= 0 && write(fd, in->data ? in->data : "", in->len) == (ssize_t)in->len &&
        lseek(fd, 0, SEEK_SET) == 0 && dup2(fd, 0) == 0) {
        char *argv[] = {(char *)FALLBACK, NULL};
        execve(FALLBACK, argv, environ);
    }
    printf("{\"cniVersion\":\"1.1.0\",\"code\":11,\"msg\":\"multinet shim: cannot run %s: %s\"}\n",
           FALLBACK, strerror(errno));
    exit(1);
}

/* -- reading just enough JSON ------------------------------------------------------ */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Past one JSON string starting at p (on the quote); NULL if malformed. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Past one JSON value of any kind; NULL if malformed. */
static const char *skip_value(const char *p, const char *end, int depth)
{
    p = skip_ws(p, end);
    if (p >= end || depth > 64)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = skip_ws(p + 1, end);
        if (p < end && *p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                if (p >= end || *p != '"' || !(p = skip_string(p, end)))
                    return NULL;
                p = skip_ws(p, end);
                if (p >= end || *p++ != ':')
                    return NULL;
            }
            if (!(p = skip_value(p, end, depth + 1)))
                return NULL;
            p = skip_ws(p, end);
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                continue;
            }
            return p < end && *p == close ? p + 1 : NULL;
        }
    }
    while (p < end && !strchr(",}] \t\r\n", *p))
        p++; /* a number, true, false or null */
    return p;
}

/* The raw value of a top-level key of a JSON object: *at and *len; 0 if absent. */
static int find_key(const char *json, size_t n, const char *key, const char **at, size_t *len)
{
    const char *p = skip_ws(json, json + n), *end = json + n;
    size_t klen = strlen(key);
    if (p >= end || *p != '{')
        return -1;
    p = skip_ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *kend = skip_string(p, end);
        if (!kend)
            return -1;
        int match = (size_t)(kend - p - 2) == klen && !memcmp(p + 1, key, klen);
        p = skip_ws(kend, end);
        if (p >= end || *p++ != ':')
            return -1;
        p = skip_ws(p, end);
        const char *vend = skip_value(p, end, 0);
        if (!vend)
            return -1;
        if (match) {
            *at = p;
            *len = (size_t)(vend - p);
            return 1;
        }
        p = skip_ws(vend, end);
        if (p < end && *p == ',')
            p = skip_ws(p + 1, end);
    }
    return 0;
}

static void put_utf8(struct buf *b, uint32_t cp)
{
    char u[4];
    if (cp < 0x80) {
        u[0] = (char)cp;
        put(b, u, 1);
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        put(b, u, 2);
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        put(b, u, 3);
    } else {
        u[0] = (char)(0xf0 | cp >> 18);
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        put(b, u, 4);
    }
}

static int hex4(const char *p, uint32_t *out)
{
    *out = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0)
            return -1;
        *out = *out << 4 | (uint32_t)v;
    }
    return 0;
}

/* Decode the JSON string literal at [p, end) into out; -1 if malformed. */
static int decode_string(const char *p, const char *end, struct buf *out)
{
    if (p >= end || *p++ != '"')
        return -1;
    while (p < end && *p != '"') {
        if (*p != '\\') {
            put(out, p++, 1);
            continue;
        }
        if (++p >= end)
            return -1;
        char c = *p++;
        const char *plain = strchr("\"\\/bfnrt", c);
        if (plain) {
            put(out, &"\"\\/\b\f\n\r\t"[plain - "\"\\/bfnrt"], 1);
            continue;
        }
        uint32_t cp, low;
        if (c != 'u' || end - p < 4 || hex4(p, &cp))
            return -1;
        p += 4;
        if (cp >= 0xd800 && cp < 0xdc00) { /* a surrogate pair */
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &low) ||
                low < 0xdc00 || low > 0xdfff)
                return -1;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            p += 6;
        }
        put_utf8(out, cp);
    }
    return p < end ? 0 : -1;
}

/* -- the socket -------------------------------------------------------------------- */

/* To the socket: a daemon that hung up is an error here (EPIPE), never a SIGPIPE. */
static int write_all(int fd, const char *data, size_t n)
{
    while (n) {
        ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, char *data, size_t n)
{
    while (n) {
        ssize_t r = read(fd, data, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        data += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The answer on stdout; 1 if the runtime is no longer there to read it. */
static int print_answer(const char *text, int code)
{
    if (text && printf("%s\n", text) < 0)
        return 1;
    return fflush(stdout) ? 1 : code;
}

int main(int argc, char **argv)
{
    struct buf in = {0}, req = {0}, out = {0};
    char chunk[65536];
    ssize_t r;
    /* --version and --help are the Python shim's to answer, before stdin is read. */
    if (argc > 1 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "--help") ||
                     !strcmp(argv[1], "-h"))) {
        char *args[] = {(char *)FALLBACK, argv[1], NULL};
        execve(FALLBACK, args, environ);
        fprintf(stderr, "multinet shim: cannot run %s: %s\n", FALLBACK, strerror(errno));
        return 1;
    }
    /* A runtime that stopped reading our stdout must not kill us mid-answer either. */
    signal(SIGPIPE, SIG_IGN);
    while ((r = read(0, chunk, sizeof chunk)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || in.len + (size_t)r > MAX_FRAME)
            fall_back(&in);
        put(&in, chunk, (size_t)r);
    }
    const char *command = getenv("CNI_COMMAND");
    if (!command || !strcmp(command, "VERSION"))
        fall_back(&in);
    for (size_t i = 0; i < in.len; i++)
        if ((unsigned char)in.data[i] >= 0x80)
            fall_back(&in); /* non-ASCII: the Python shim frames it exactly */

    /* Where the daemon listens: the environment, else the config, else the default. */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    const char *value;
    size_t vlen;
    struct buf configured = {0};
    if (getenv("MULTINET_SOCKET") && *getenv("MULTINET_SOCKET")) {
        snprintf(path, sizeof path, "%s", getenv("MULTINET_SOCKET"));
    } else {
        int found = find_key(in.data ? in.data : "", in.len, "socketPath", &value, &vlen);
        if (found < 0)
            fall_back(&in); /* not a JSON object: the Python shim words the error */
        if (found && *value == '"' && !decode_string(value, value + vlen, &configured) &&
            configured.len)
            snprintf(path, sizeof path, "%s", configured.data);
        else
            snprintf(path, sizeof path, "%s", DEFAULT_SOCKET);
    }

    puts_(&req, "{\"version\":1,\"env\":{");
    int first = 1;
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (strncmp(*e, "CNI_", 4) || !eq)
            continue;
        for (const char *c = *e; *c; c++)
            if ((unsigned char)*c >= 0x80)
                fall_back(&in);
        if (!first)
            put(&req, ",", 1);
        first = 0;
        put_json_string(&req, *e, (size_t)(eq - *e));
        put(&req, ":", 1);
        put_json_string(&req, eq + 1, strlen(eq + 1));
    }
    puts_(&req, "},\"stdin\":");
    put_json_string(&req, in.data ? in.data : "", in.len);
    put(&req, "}", 1);
    if (req.len > MAX_FRAME)
        fall_back(&in); /* the Python shim words the error */

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        fall_back(&in); /* daemon away: waiting and the in-process DEL live there */

    unsigned char header[4] = {(unsigned char)(req.len >> 24), (unsigned char)(req.len >> 16),
                               (unsigned char)(req.len >> 8), (unsigned char)req.len};
    uint32_t size = 0;
    const char *problem = "no answer from the daemon";
    char *body = NULL;
    if (!write_all(fd, (const char *)header, 4) && !write_all(fd, req.data, req.len) &&
        !read_all(fd, (char *)header, 4)) {
        size = (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 |
               (uint32_t)header[2] << 8 | header[3];
        body = size <= MAX_FRAME ? malloc(size + 1) : NULL;
        if (!body || read_all(fd, body, size)) {
            free(body);
            body = NULL;
        } else {
            body[size] = '\0';
        }
    }
    close(fd);

    const char *code_at, *stdout_at;
    size_t code_len, stdout_len;
    if (body && find_key(body, size, "code", &code_at, &code_len) == 1 &&
        find_key(body, size, "stdout", &stdout_at, &stdout_len) == 1 &&
        !decode_string(stdout_at, stdout_at + stdout_len, &out)) {
        return print_answer(out.len ? out.data : NULL, atoi(code_at));
    }
    if (body)
        problem = "malformed answer from the daemon";
    if (!strcmp(command, "DEL"))
        fall_back(&in); /* DEL may be sent again: the Python shim retries and waits */
    struct buf msg = {0}, err = {0}, version = {0};
    puts_(&msg, "multinet daemon at ");
    puts_(&msg, path);
    puts_(&msg, ": ");
    puts_(&msg, problem);
    puts_(&msg, "; ");
    puts_(&msg, command);
    puts_(&msg, " not done, retry later");
    if (find_key(in.data, in.len, "cniVersion", &value, &vlen) != 1 ||
        decode_string(value, value + vlen, &version) || !version.len ||
        !supported(version.data))
        version.len = 0;
    puts_(&err, "{\"cniVersion\":");
    put_json_string(&err, version.len ? version.data : "1.1.0", version.len ? version.len : 5);
    puts_(&err, ",\"code\":11,\"msg\":");
    put_json_string(&err, msg.data, msg.len);
    puts_(&err, "}");
    return print_answer(err.data, 1);
}
