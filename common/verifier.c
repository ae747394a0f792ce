// verifier.c — see verifier.h.
#include "verifier.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_OUTPUT ((size_t)16 << 20)

// The child's stdin is a socket, not a pipe: send(MSG_NOSIGNAL) then reports a child that exited
// early as EPIPE instead of killing srlm with SIGPIPE.
static pid_t spawn(const char *cmd, int *to_child, int *from_child)
{
    int sv[2], out[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -1;
    if (pipe2(out, O_CLOEXEC) < 0) { close(sv[0]); close(sv[1]); return -1; }
    pid_t pid = fork();
    if (pid < 0) { close(sv[0]); close(sv[1]); close(out[0]); close(out[1]); return -1; }
    if (pid == 0) {
        setpgid(0, 0);                         // so a timeout kills its children too
        dup2(sv[1], 0);
        dup2(out[1], 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    close(sv[1]);
    close(out[1]);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    *to_child = sv[0], *from_child = out[0];
    return pid;
}

// Feeds input and collects output concurrently until the child closes its stdout or the deadline
// passes. Returns 0, or -1 on timeout, -2 on an I/O error, -3 if the output is too large.
static int exchange(int to, int from, const char *input, size_t len, double deadline,
                    char **outbuf, size_t *outlen)
{
    size_t sent = 0, cap = 4096, got = 0;
    char *buf = xmalloc(cap);
    int rc = 0;
    for (;;) {
        struct pollfd p[2] = {{from, POLLIN, 0}, {to, POLLOUT, 0}};
        int nfd = to >= 0 ? 2 : 1;
        double left = deadline - now_seconds();
        if (left <= 0) { rc = -1; break; }
        int r = poll(p, nfd, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { rc = -2; break; }
        if (nfd == 2 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(to, input + sent, len - sent, MSG_NOSIGNAL);
            if (w > 0) sent += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR) sent = len;   // child stopped reading
            if (sent == len) { close(to); to = -1; }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (got + 4096 > cap) buf = xrealloc(buf, cap *= 2);
            ssize_t n = read(from, buf + got, cap - got - 1);
            if (n == 0) break;
            if (n < 0 && errno != EAGAIN && errno != EINTR) { rc = -2; break; }
            if (n > 0) got += (size_t)n;
            if (got > MAX_OUTPUT) { rc = -3; break; }
        }
    }
    if (to >= 0) close(to);
    buf[got] = '\0';
    *outbuf = buf, *outlen = got;
    return rc;
}

static bool parse_line(const char *line, struct verifier_result *res, char *err, size_t errcap)
{
    json_error_t jerr;
    json_t *v = json_loads(line, JSON_DECODE_ANY, &jerr);
    memset(res, 0, sizeof *res);
    bool ok = false;
    if (v && json_is_number(v)) {
        res->reward = json_number_value(v);
        ok = true;
    } else if (v && json_is_object(v) && json_is_number(json_object_get(v, "reward"))) {
        res->reward = json_number_value(json_object_get(v, "reward"));
        ok = true;
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            if (!strcmp(k, "reward") || !json_is_number(x) || res->nextra == VERIFIER_MAX_EXTRA) continue;
            snprintf(res->extra_name[res->nextra], sizeof res->extra_name[0], "%s", k);
            res->extra_value[res->nextra++] = json_number_value(x);
        }
    }
    json_decref(v);
    if (!ok) snprintf(err, errcap, "answered \"%.60s\", expected a number or {\"reward\": number}", line);
    else if (!isfinite(res->reward)) { snprintf(err, errcap, "answered a non-finite reward"); ok = false; }
    return ok;
}

static bool parse_output(char *out, size_t n, struct verifier_result *res, char *err, size_t errcap)
{
    size_t k = 0;
    char *line = out;
    while (*line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        size_t L = strlen(line);
        if (L > 0 && line[L - 1] == '\r') line[L - 1] = '\0';
        if (k == n) { snprintf(err, errcap, "answered more than %zu lines", n); return false; }
        if (!parse_line(line, &res[k], err, errcap)) return false;
        k++;
        if (!nl) break;
        line = nl + 1;
    }
    if (k < n) { snprintf(err, errcap, "answered %zu lines for %zu samples", k, n); return false; }
    return true;
}

bool verifier_run(const char *cmd, const char *input, size_t input_len, size_t n,
                  double timeout_s, struct verifier_result *out, char *err, size_t errcap)
{
    int to, from;
    pid_t pid = spawn(cmd, &to, &from);
    if (pid < 0) { snprintf(err, errcap, "cannot start: %s", strerror(errno)); return false; }
    char *buf;
    size_t len;
    int rc = exchange(to, from, input, input_len, now_seconds() + timeout_s * (double)n, &buf, &len);
    close(from);
    if (rc != 0) kill(-pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    bool ok = false;
    if (rc == -1) snprintf(err, errcap, "timed out after %g s for %zu samples (killed)", timeout_s * (double)n, n);
    else if (rc == -2) snprintf(err, errcap, "I/O error talking to it: %s", strerror(errno));
    else if (rc == -3) snprintf(err, errcap, "wrote more than %zu bytes", MAX_OUTPUT);
    else if (WIFSIGNALED(status)) snprintf(err, errcap, "killed by signal %d", WTERMSIG(status));
    else if (WEXITSTATUS(status) == 127) snprintf(err, errcap, "cannot run (exit 127: command not found?)");
    else if (WEXITSTATUS(status) != 0) snprintf(err, errcap, "exited with status %d", WEXITSTATUS(status));
    else ok = parse_output(buf, n, out, err, errcap);
    free(buf);
    return ok;
}
