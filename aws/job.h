/*
 * Blocking work off the event loop: a function runs on a thread of its own, and its completion
 * is delivered on the loop through a pipe (so it works whether or not libevent was set up for
 * threads). The credential provider reads files (web identity and container tokens, the SSO
 * token cache) and runs credential_process this way: nothing it does may block the loop.
 *
 * Ownership: ctx belongs to the job from aws_job_start until either done(ctx) runs on the loop
 * (then to done) or, after aws_job_cancel, drop(ctx) runs when the work has ended (on the
 * worker thread, or inside aws_job_cancel when it already had). work must only touch ctx.
 *
 * Async contract (docs/style.md, "Asynchronous calls"): aws_job_start either fails (NULL, *e set;
 * ctx still the caller's) or returns a job whose done runs exactly once, later, from the loop,
 * unless the job is cancelled first.
 */
#ifndef AWS_JOB_H
#define AWS_JOB_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/compat.h"
#include "core/err.h"

struct event_base;
struct aws_job;

typedef void aws_job_fn(void *ctx);

struct aws_job *aws_job_start(struct event_base *base, aws_job_fn *work, aws_job_fn *done,
                              aws_job_fn *drop, void *ctx, struct err *e) ATTR_WUR;
/* From the loop, before done ran: done never runs; drop(ctx) runs once the work has ended. */
void aws_job_cancel(struct aws_job *j);

/*
 * Runs argv[0] (looked up on PATH) with envp and argv, stdin /dev/null, for at most timeout_ms;
 * blocking, for a job's work function. *out gets standard output (at most out_max bytes: more
 * is an error), *errout the first err_max bytes of standard error. *status is the exit status
 * (0..255) when the process exited. Errors (ERRC_UNAVAILABLE): the program cannot be started,
 * killed by a signal, ERRC_TIMEOUT: still running at the deadline (then killed), ERRC_TOO_LARGE:
 * too much output. The child starts with every signal at its default and none blocked.
 */
int aws_process_run(char *const argv[], char *const envp[], long timeout_ms, size_t out_max,
                    size_t err_max, struct buf *out, struct buf *errout, int *status,
                    struct err *e) ATTR_WUR;

#endif
