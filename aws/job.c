/*
 * Jobs and processes off the loop (aws/job.h).
 *
 * A job is shared by the loop and its thread, each holding a reference; a mutex guards the
 * flags and the count, and whoever drops the last reference frees the job. The thread, when
 * work returns: finished = true, then either (cancelled) drops ctx, or writes one byte to the
 * pipe (under the mutex, so a cancel cannot close the read end in between); it closes the write
 * end and lets go. The loop, on that byte: closes the read end, lets go and calls done.
 * aws_job_cancel sets cancelled, closes the read end, drops ctx when the work had finished
 * (the thread no longer touches it), and lets go.
 */
#include "aws/job.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h"
#include "core/util.h"

struct aws_job {
    pthread_mutex_t mu;
    int refs; /* the loop's and the thread's */
    bool finished;
    bool cancelled;
    int rfd, wfd;
    struct event *ev;
    aws_job_fn *work, *done, *drop;
    void *ctx;
};

static void job_unref(struct aws_job *j)
{
    int left;
    pthread_mutex_lock(&j->mu);
    left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left == 0) {
        pthread_mutex_destroy(&j->mu);
        xfree(j);
    }
}

static void *job_thread(void *arg)
{
    struct aws_job *j = arg;
    bool cancelled;
    j->work(j->ctx);
    pthread_mutex_lock(&j->mu);
    j->finished = true;
    cancelled = j->cancelled;
    if (!cancelled) {
        ssize_t n;
        do {
            n = write(j->wfd, "x", 1);
        } while (n < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&j->mu);
    if (cancelled) {
        j->drop(j->ctx);
    }
    close(j->wfd);
    job_unref(j);
    return NULL;
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    struct aws_job *j = arg;
    aws_job_fn *done = j->done;
    void *ctx = j->ctx;
    (void)fd;
    (void)what;
    event_free(j->ev);
    close(j->rfd);
    job_unref(j);
    done(ctx);
}

struct aws_job *aws_job_start(struct event_base *base, aws_job_fn *work, aws_job_fn *done,
                              aws_job_fn *drop, void *ctx, struct err *e)
{
    struct aws_job *j = xcalloc(1, sizeof(*j));
    int fds[2];
    pthread_t th;
    pthread_attr_t attr;
    sigset_t all, old;
    int rc;
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        xfree(j);
        err_errno(e, ERRC_INTERNAL, "cannot create a pipe");
        return NULL;
    }
    pthread_mutex_init(&j->mu, NULL);
    j->refs = 2;
    j->rfd = fds[0];
    j->wfd = fds[1];
    j->work = work;
    j->done = done;
    j->drop = drop;
    j->ctx = ctx;
    j->ev = event_new(base, j->rfd, EV_READ, on_ready, j);
    if (j->ev == NULL || event_add(j->ev, NULL) != 0) {
        err_set(e, ERRC_INTERNAL, "cannot watch a pipe");
        goto fail;
    }
    /* the thread takes no signal: jitrd's loop handles them */
    sigfillset(&all);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&th, &attr, job_thread, j);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        errno = rc;
        err_errno(e, ERRC_INTERNAL, "cannot start a thread");
        goto fail;
    }
    return j;
fail:
    if (j->ev != NULL) {
        event_free(j->ev);
    }
    close(j->rfd);
    close(j->wfd);
    pthread_mutex_destroy(&j->mu);
    xfree(j);
    return NULL;
}

void aws_job_cancel(struct aws_job *j)
{
    bool finished;
    if (j == NULL) {
        return;
    }
    event_free(j->ev);
    j->ev = NULL;
    pthread_mutex_lock(&j->mu);
    finished = j->finished;
    j->cancelled = true;
    pthread_mutex_unlock(&j->mu);
    close(j->rfd);
    if (finished) {
        j->drop(j->ctx); /* the thread is done with it */
    }
    job_unref(j);
}

/* ---- processes ----------------------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    return time_mono_ns() / 1000000;
}

/* Reads what fd has into b (at most cap bytes kept, the rest counted in *dropped); false at EOF
 * or on an error. */
static bool drain(int fd, struct buf *b, size_t cap, size_t *dropped)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0) {
        return errno == EINTR || errno == EAGAIN;
    }
    if (n == 0) {
        return false;
    }
    size_t keep = b->len < cap ? cap - b->len : 0;
    if (keep > (size_t)n) {
        keep = (size_t)n;
    }
    buf_add(b, chunk, keep);
    *dropped += (size_t)n - keep;
    return true;
}

int aws_process_run(char *const argv[], char *const envp[], long timeout_ms, size_t out_max,
                    size_t err_max, struct buf *out, struct buf *errout, int *status, struct err *e)
{
    int po[2] = { -1, -1 }, pe[2] = { -1, -1 };
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    pid_t pid = 0;
    int rc, st = 0;
    size_t out_dropped = 0, err_dropped = 0;
    bool open_o = true, open_e = true, timed_out = false;
    int64_t deadline = mono_ms() + timeout_ms;
    *status = -1;
    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
        err_errno(e, ERRC_INTERNAL, "cannot create a pipe");
        goto close_pipes;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    if (rc != 0) {
        errno = rc;
        err_errno(e, ERRC_UNAVAILABLE, "cannot run '%.100s'", argv[0]);
        goto close_pipes;
    }
    while (open_o || open_e) {
        struct pollfd fds[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        fds[0].fd = open_o ? po[0] : -1;
        fds[1].fd = open_e ? pe[0] : -1;
        rc = poll(fds, 2, (int)(left > 1000 ? 1000 : left));
        if (rc < 0 && errno != EINTR) {
            break;
        }
        if (rc <= 0) {
            continue;
        }
        if (open_o && fds[0].revents != 0) {
            open_o = drain(po[0], out, out_max, &out_dropped);
        }
        if (open_e && fds[1].revents != 0) {
            open_e = drain(pe[0], errout, err_max, &err_dropped);
        }
        if (out_dropped > 0) {
            break;
        }
    }
    if (open_o || open_e) {
        kill(pid, SIGKILL);
    }
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            err_errno(e, ERRC_UNAVAILABLE, "'%.100s': cannot wait for it", argv[0]);
            goto close_pipes;
        }
    }
    if (timed_out) {
        err_set(e, ERRC_TIMEOUT, "'%.100s' still running after %ld ms (killed)", argv[0],
                timeout_ms);
    } else if (out_dropped > 0) {
        err_set(e, ERRC_TOO_LARGE, "'%.100s' wrote more than %zu bytes (killed)", argv[0], out_max);
    } else if (open_o || open_e) {
        err_set(e, ERRC_UNAVAILABLE, "'%.100s': cannot read its output", argv[0]);
    } else if (WIFSIGNALED(st)) {
        err_set(e, ERRC_UNAVAILABLE, "'%.100s' killed by signal %d", argv[0], WTERMSIG(st));
    } else {
        *status = WEXITSTATUS(st);
    }
close_pipes:
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0) {
            close(po[i]);
        }
        if (pe[i] >= 0) {
            close(pe[i]);
        }
    }
    return *status >= 0 ? 0 : -1;
}
