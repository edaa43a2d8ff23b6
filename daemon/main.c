/*
 * jitrd: the parent process. It validates the configuration (building a snapshot once, so a bad
 * file, a missing station CA or an unloadable CA key fails at start with a message), maps the
 * shared metrics, forks one worker per core (config workers), and supervises them without an
 * event loop: signals are blocked and taken with sigtimedwait. A worker that dies is replaced
 * after a backoff (100 ms doubling to 5 s, back to 100 ms once a worker has lived 30 s);
 * SIGHUP is forwarded; SIGTERM/SIGINT are forwarded and the parent waits for the workers to
 * drain (drain_timeout + 5 s, then SIGKILL). A parent that dies without that (SIGKILL) sends
 * its workers SIGTERM through the kernel (PR_SET_PDEATHSIG): they drain and exit.
 *   jitrd --config FILE [--check-config]
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "daemon/daemon.h"
#include "issuance/issuance.h"
#include "jitr/jitr.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define HEALTHY_MS     30000

struct child {
    pid_t pid;           /* 0 when not running */
    int64_t started_ms;
    int64_t restart_at_ms; /* when pid == 0: spawn at this time */
    int64_t backoff_ms;
};

static const char usage[] =
    "usage: jitrd [--config FILE] [--check-config]\n"
    "  --config FILE    configuration (default: $JITRCA_CONFIG, else built-in defaults)\n"
    "  --check-config   validate the configuration, stations, CAs, keys and TLS files, then exit\n"
    "The passphrase of file: CA keys comes from key_passphrase_file or $JITRCA_KEY_PASSPHRASE.\n";

static pid_t spawn(const char *config, size_t slot, const sigset_t *orig)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        char eb[128];
        log_error("cannot fork worker %zu: %s", slot, err_errno_str(errno, eb, sizeof(eb)));
        return 0;
    }
    if (pid == 0) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGHUP, &dfl, NULL);
        sigaction(SIGTERM, &dfl, NULL);
        sigaction(SIGINT, &dfl, NULL);
        sigaction(SIGCHLD, &dfl, NULL);
        sigprocmask(SIG_SETMASK, orig, NULL);
        /* a parent that dies (SIGKILL, a crash) stops its workers as SIGTERM would: they drain
         * and exit, and free the listeners for the next jitrd; one already gone before this
         * line is seen by getppid */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) {
            _exit(1);
        }
        _exit(worker_main(config, slot));
    }
    return pid;
}

static void describe_exit(int status, char *out, size_t cap)
{
    if (WIFSIGNALED(status)) {
        snprintf(out, cap, "killed by signal %d", WTERMSIG(status));
    } else {
        snprintf(out, cap, "exit status %d", WEXITSTATUS(status));
    }
}

static int supervise(const char *config, size_t n, int64_t drain_ms)
{
    struct child *kids = xcalloc(n, sizeof(*kids));
    sigset_t set, orig;
    bool stopping = false;
    int64_t stop_deadline = 0;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, &orig);
    for (size_t i = 0; i < n; i++) {
        kids[i].backoff_ms = BACKOFF_MIN_MS;
        kids[i].pid = spawn(config, i, &orig);
        kids[i].started_ms = time_now_ms();
        if (kids[i].pid == 0) {
            kids[i].restart_at_ms = time_now_ms() + BACKOFF_MIN_MS;
        }
    }
    log_info("jitrd %s: %zu workers", JITRCA_VERSION, n);
    for (;;) {
        int64_t now = time_now_ms();
        int64_t wait_ms = 1000;
        size_t running = 0;
        for (size_t i = 0; i < n; i++) {
            if (kids[i].pid) {
                running++;
            } else if (!stopping) {
                if (kids[i].restart_at_ms <= now) {
                    kids[i].pid = spawn(config, i, &orig);
                    kids[i].started_ms = now;
                    if (kids[i].pid) {
                        metrics_worker_restart();
                        log_info("worker %zu restarted (pid %d)", i, (int)kids[i].pid);
                        running++;
                    } else {
                        kids[i].restart_at_ms = now + kids[i].backoff_ms;
                    }
                } else if (kids[i].restart_at_ms - now < wait_ms) {
                    wait_ms = kids[i].restart_at_ms - now;
                }
            }
        }
        if (stopping && running == 0) {
            break;
        }
        if (stopping && now >= stop_deadline) {
            for (size_t i = 0; i < n; i++) {
                if (kids[i].pid) {
                    log_warn("worker %zu did not drain in time: killing it", i);
                    kill(kids[i].pid, SIGKILL);
                }
            }
            stop_deadline = now + 60000;
        }
        struct timespec ts = { (time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L };
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &ts);
        if (sig == SIGHUP) {
            log_info("SIGHUP: forwarding to the workers");
            for (size_t i = 0; i < n; i++) {
                if (kids[i].pid) {
                    kill(kids[i].pid, SIGHUP);
                }
            }
        } else if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
            log_info("%s: stopping the workers", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            stopping = true;
            stop_deadline = time_now_ms() + drain_ms + 5000;
            for (size_t i = 0; i < n; i++) {
                if (kids[i].pid) {
                    kill(kids[i].pid, SIGTERM);
                }
            }
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (size_t i = 0; i < n; i++) {
                if (kids[i].pid != pid) {
                    continue;
                }
                char why[64];
                describe_exit(status, why, sizeof(why));
                kids[i].pid = 0;
                if (stopping) {
                    log_info("worker %zu (pid %d) exited: %s", i, (int)pid, why);
                    break;
                }
                now = time_now_ms();
                if (now - kids[i].started_ms >= HEALTHY_MS) {
                    kids[i].backoff_ms = BACKOFF_MIN_MS;
                }
                kids[i].restart_at_ms = now + kids[i].backoff_ms;
                log_warn("worker %zu (pid %d) died (%s): restarting in %lld ms", i, (int)pid, why,
                         (long long)kids[i].backoff_ms);
                kids[i].backoff_ms *= 2;
                if (kids[i].backoff_ms > BACKOFF_MAX_MS) {
                    kids[i].backoff_ms = BACKOFF_MAX_MS;
                }
            }
        }
    }
    xfree(kids);
    log_info("jitrd stopped");
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *config = NULL;
    bool check = false;
    struct err e = ERR_INIT;
    int ch;
    mem_install();
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 'k':
            check = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf("jitrd %s\n", JITRCA_VERSION);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "jitrd: error: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    struct snap *s = snap_build(config, 0, &e);
    if (s == NULL) {
        fprintf(stderr, "jitrd: error: %s\n", e.msg);
        return err_exit_code(e.code);
    }
    log_set_level((enum log_level)log_level_parse(s->conf->log_level));
    if (s->degraded) {
        for (size_t i = 0; i < s->ncas; i++) {
            if (s->cas[i].ctx == NULL) {
                fprintf(stderr, "jitrd: error: CA '%s' cannot sign: %s\n", s->cas[i].name,
                        s->cas[i].err.msg);
                int rc = err_exit_code(s->cas[i].err.code);
                snap_unref(s);
                return rc;
            }
        }
    }
    size_t workers = conf_workers(s->conf);
    int64_t drain_ms = s->conf->drain_timeout * 1000;
    if (s->conf->jitr.enabled && jitr_check_config(s->conf, &e) != 0) {
        fprintf(stderr, "jitrd: error: %s\n", e.msg);
        snap_unref(s);
        return err_exit_code(e.code);
    }
    if (check) {
        printf("configuration OK: listen %s, %zu stations, CAs:", s->conf->listen,
               stations_count(s->stations));
        for (size_t i = 0; i < s->ncas; i++) {
            printf(" %s%s", s->cas[i].name, i == s->def ? " (default)" : "");
        }
        printf(", station CA %s, admin_listen %s", s->conf->station_ca,
               s->conf->admin_listen[0] ? s->conf->admin_listen : "(none)");
        if (s->conf->jitr.enabled) {
            printf("; JITR: intake %s%s%s, template %s",
                   s->conf->jitr.listen[0] ? s->conf->jitr.listen : "(no HTTP)",
                   s->conf->jitr.sqs_queue_url[0] ? ", SQS " : "", s->conf->jitr.sqs_queue_url,
                   s->conf->jitr.template);
        }
        printf("\n");
        snap_unref(s);
        return 0;
    }
    snap_unref(s);
    if (metrics_init(&e) != 0) {
        fprintf(stderr, "jitrd: error: %s\n", e.msg);
        return 1;
    }
    return supervise(config, workers, drain_ms);
}
