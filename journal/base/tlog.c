/* tlog.c: logfmt lines on stderr, one write(2) per event. */
#include "tlog.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static char tlog_component[32] = "tandem";
static enum tlog_level tlog_min = TLOG_INFO;

void tlog_init(const char *component, enum tlog_level min_level)
{
    snprintf(tlog_component, sizeof tlog_component, "%s", component);
    tlog_min = min_level;
    const char *env = getenv("TANDEM_LOG_LEVEL");
    if (!env) return;
    if (!strcasecmp(env, "debug")) tlog_min = TLOG_DEBUG;
    else if (!strcasecmp(env, "info")) tlog_min = TLOG_INFO;
    else if (!strcasecmp(env, "warn")) tlog_min = TLOG_WARN;
    else if (!strcasecmp(env, "error")) tlog_min = TLOG_ERROR;
}

void tlog_emit(enum tlog_level level, const char *event, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < tlog_min) return;

    char line[4096];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s "
                     "comp=%s event=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     names[level & 3], tlog_component, event);
    if (n < 0) return;
    if ((size_t)n < sizeof line) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0) n += m;
    }
    if ((size_t)n >= sizeof line - 1) n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* One write per line keeps lines whole across threads and processes. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

const char *tlog_q(char *buf, size_t size, const char *s)
{
    size_t o = 0;
    if (size < 3) {
        if (size) buf[0] = 0;
        return buf;
    }
    buf[o++] = '"';
    for (; s && *s && o + 3 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            buf[o++] = ' ';
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = 0;
    return buf;
}
