// progress.c — see progress.h.
#include "progress.h"
#include "util.h"

#include <stdio.h>
#include <unistd.h>

double progress_every = 30.0;

void progress_init(struct progress *p, const char *unit, long long total)
{
    *p = (struct progress){.unit = unit, .total = total};
    p->t0 = p->last = now_seconds();
    p->tty = isatty(STDERR_FILENO);
    p->on = log_level >= LOG_LEVEL_INFO && !log_mute;
}

void progress_parse_every(const char *arg)
{
    progress_every = parse_float(arg, 0, 86400, "--progress-every");
}

const char *progress_clock(double s, char *buf)
{
    long t = s > 0 ? (long)(s + 0.5) : 0;
    if (t >= 3600) snprintf(buf, 32, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, 32, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

static void report(struct progress *p, double now)
{
    double dt = now - p->t0;
    char done[96], rate[96] = "", el[32], eta[48] = "";
    if (p->total >= 0)
        snprintf(done, sizeof done, "%lld/%lld %s (%.0f%%)", p->done, p->total, p->unit,
                 p->total ? 100.0 * (double)p->done / (double)p->total : 100.0);
    else
        snprintf(done, sizeof done, "%lld %s", p->done, p->unit);
    if (dt > 0) {
        int n = snprintf(rate, sizeof rate, "  %.1f %s/s", (double)p->done / dt, p->unit);
        if (p->tokens > 0) snprintf(rate + n, sizeof rate - (size_t)n, "  %.0f tok/s", (double)p->tokens / dt);
    }
    if (p->total > 0 && p->done > 0 && p->done < p->total) {
        char c[32];
        snprintf(eta, sizeof eta, "  eta %s", progress_clock(dt * (double)(p->total - p->done) / (double)p->done, c));
    }
    fprintf(stderr, "%s%s: %s%s  elapsed %s%s%s", p->tty ? "\r" : "", progname, done, rate,
            progress_clock(dt, el), eta, p->tty ? "\033[K" : "\n");
    fflush(stderr);
    p->drawn = p->tty;
    p->last = now;
}

void progress_add(struct progress *p, long long n, long long tokens)
{
    p->done += n;
    p->tokens += tokens;
    if (!p->on) return;
    double now = now_seconds();
    // a terminal is redrawn at most 4 times a second (more often only if --progress-every asks)
    double gap = p->tty && progress_every > 0.25 ? 0.25 : progress_every;
    if (now - p->last >= gap) report(p, now);
}

void progress_end(struct progress *p)
{
    if (p->drawn) fputs("\r\033[K", stderr), fflush(stderr);
    p->drawn = false;
}
