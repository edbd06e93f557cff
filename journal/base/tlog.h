/*
 * tlog.h: structured logging, one event per line (logfmt).
 *
 *   ts=2026-11-25T18:01:02.123Z level=info comp=csi event=volume.created
 *   vol=pvc-1 region=a msg="..."
 *
 * The caller passes the event name and a printf format that continues the
 * line with key=value pairs (use tlog_q() to quote free text).  Lines go to
 * stderr with one write(2) each, so concurrent threads and processes never
 * interleave within a line.  Thread-safe.  Never log a field named
 * `secrets` (CSI secrets): callers must not pass them here.
 *
 * The component name and minimum level are process-wide settings made once
 * in main() (the only global state of the logger).
 */
#ifndef TLOG_H
#define TLOG_H

#include <stddef.h>

enum tlog_level { TLOG_DEBUG = 0, TLOG_INFO, TLOG_WARN, TLOG_ERROR };

/* Set the component (copied, at most 31 bytes) and the minimum level.
 * TANDEM_LOG_LEVEL=debug|info|warn|error in the environment overrides. */
void tlog_init(const char *component, enum tlog_level min_level);

void tlog_emit(enum tlog_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define tlog_debug(ev, ...) tlog_emit(TLOG_DEBUG, ev, __VA_ARGS__)
#define tlog_info(ev, ...) tlog_emit(TLOG_INFO, ev, __VA_ARGS__)
#define tlog_warn(ev, ...) tlog_emit(TLOG_WARN, ev, __VA_ARGS__)
#define tlog_error(ev, ...) tlog_emit(TLOG_ERROR, ev, __VA_ARGS__)

/* Quote s for a logfmt value into buf (always NUL-terminated, truncated to
 * size): returns buf.  Escapes quotes, backslashes and control bytes. */
const char *tlog_q(char *buf, size_t size, const char *s);

#endif /* TLOG_H */
