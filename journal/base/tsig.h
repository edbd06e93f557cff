/*
 * tsig.h: process signals for daemons and tools whose threads must never
 * see SIGTERM, SIGINT or SIGPIPE (part of libbase; libc only).
 *
 * Pattern: call tb_signals_block() first thing in main(), before any
 * thread exists, so every thread made afterwards (gRPC's, librados's, the
 * program's own) inherits the blocked mask; then the main thread waits in
 * tb_signals_wait() and shuts down in order when it returns.  No signal
 * handler ever runs, so nothing has to be async-signal-safe.
 *
 * SIGPIPE stays blocked for good: a peer closing a socket or pipe gives
 * EPIPE on the write instead of killing the process.
 */
#ifndef TANDEM_TSIG_H
#define TANDEM_TSIG_H

/* Block SIGTERM, SIGINT and SIGPIPE in the calling thread; threads
 * created afterwards inherit the mask. */
void tb_signals_block(void);

/* Wait for SIGTERM or SIGINT and return its number.  timeout_ms > 0: give
 * up after that long and return 0; timeout_ms <= 0 waits forever.  The
 * signals must have been blocked with tb_signals_block() in every thread
 * (otherwise one of them may take the signal and die of it).  A signal
 * that arrived before the call is returned at once (it stays pending). */
int tb_signals_wait(int timeout_ms);

#endif /* TANDEM_TSIG_H */
