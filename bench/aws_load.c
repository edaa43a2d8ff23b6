/*
 * aws_load: drives the AWS IoT client at a given concurrency and prints one JSON line with
 * throughput and CPU per request. Used by bench/aws.sh (requests/s against the stand-in at
 * 0 and 30 ms latency) and by tests/integration/aws_bucket_shared.sh (several processes
 * sharing one Redis token bucket). Settings come from the environment like every AWS client
 * (AWS_ENDPOINT_URL_IOT, AWS_REGION, credentials).
 *
 *   aws_load [--op describe-thing|get-policy|get-registration-code] [--n N] [--concurrency C]
 *            [--rates SPEC] [--redis URL] [--no-quota] [--thing NAME]
 */
#include <event2/event.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "aws/iot.h"
#include "core/mem.h"
#include "core/util.h"

struct load {
    struct aws_iot *c;
    const char *op;
    const char *thing;
    uint64_t started, done, ok, failed, attempts, n;
    int64_t paced_ms;
    char last_error[256];
};

static void start_one(struct load *l);

static void on_done(void *arg, const struct aws_iot_result *r, const struct err *e)
{
    struct load *l = arg;
    l->done++;
    l->attempts += r->attempts;
    l->paced_ms += r->paced_ms;
    if (e == NULL) {
        l->ok++;
    } else {
        l->failed++;
        snprintf(l->last_error, sizeof(l->last_error), "%s", e->msg);
    }
    if (e == NULL || e->code != ERRC_CANCELED) {
        start_one(l);
    }
}

static void start_one(struct load *l)
{
    struct err e = ERR_INIT;
    int rc;
    if (l->started >= l->n) {
        return;
    }
    l->started++;
    if (strcmp(l->op, "get-registration-code") == 0) {
        rc = aws_iot_get_registration_code(l->c, on_done, l, &e);
    } else if (strcmp(l->op, "get-policy") == 0) {
        rc = aws_iot_get_policy(l->c, l->thing, on_done, l, &e);
    } else {
        rc = aws_iot_describe_thing(l->c, l->thing, on_done, l, &e);
    }
    if (rc != 0) {
        l->done++;
        l->failed++;
        snprintf(l->last_error, sizeof(l->last_error), "%s", e.msg);
    }
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "op", required_argument, NULL, 'o' },          { "n", required_argument, NULL, 'n' },
        { "concurrency", required_argument, NULL, 'c' }, { "rates", required_argument, NULL, 'r' },
        { "redis", required_argument, NULL, 'R' },       { "no-quota", no_argument, NULL, 'Q' },
        { "thing", required_argument, NULL, 't' },       { NULL, 0, NULL, 0 },
    };
    struct aws_iot_opts o = { 0 };
    struct load l = { 0 };
    struct err e = ERR_INIT;
    struct aws_iot_sync s;
    uint64_t conc = 1, v = 0, reqs = 0, conns = 0;
    int ch, rc = 1;
    double cpu0, cpu, secs;
    int64_t t0;
    struct event_base *base = event_base_new();
    l.op = "describe-thing";
    l.thing = "bench-thing";
    l.n = 100;
    mem_install();
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'o':
            l.op = optarg;
            break;
        case 'n':
        case 'c':
            if (str_to_u64(optarg, &v) != 0 || v == 0 || v > 10000000) {
                fprintf(stderr, "aws_load: bad number '%s'\n", optarg);
                return 2;
            }
            *(ch == 'n' ? &l.n : &conc) = v;
            break;
        case 'r':
            o.rates = optarg;
            break;
        case 'R':
            o.redis_url = optarg;
            break;
        case 'Q':
            o.no_quota = true;
            break;
        case 't':
            l.thing = optarg;
            break;
        default:
            return 2;
        }
    }
    o.base = base;
    aws_iot_sync_init(&s);
    if ((l.c = aws_iot_new(&o, &e)) == NULL) {
        fprintf(stderr, "aws_load: %s\n", e.msg);
        goto out;
    }
    /* the thing (or policy) read by the load; creating it again is a no-op */
    if (strcmp(l.op, "describe-thing") == 0 &&
        (aws_iot_create_thing(l.c, l.thing, NULL, NULL, NULL, aws_iot_sync_cb, &s, &e) != 0 ||
         aws_iot_sync_wait(l.c, &s, &e) != 0)) {
        fprintf(stderr, "aws_load: %s\n", e.msg);
        goto out;
    }
    cpu0 = cpu_seconds();
    t0 = time_mono_ns();
    for (uint64_t i = 0; i < conc; i++) {
        start_one(&l);
    }
    while (l.done < l.n && event_base_loop(base, EVLOOP_ONCE) >= 0) {
    }
    secs = (double)(time_mono_ns() - t0) / 1e9;
    cpu = cpu_seconds() - cpu0;
    aws_transport_stats(aws_iot_transport(l.c), &reqs, &conns);
    printf("{\"op\":\"%s\",\"n\":%llu,\"concurrency\":%llu,\"ok\":%llu,\"failed\":%llu,"
           "\"attempts\":%llu,\"seconds\":%.3f,\"rps\":%.1f,\"cpu_us_per_req\":%.1f,"
           "\"connections\":%llu,\"paced_ms_avg\":%.1f,\"last_error\":\"%s\"}\n",
           l.op, (unsigned long long)l.n, (unsigned long long)conc, (unsigned long long)l.ok,
           (unsigned long long)l.failed, (unsigned long long)l.attempts, secs, (double)l.n / secs,
           cpu * 1e6 / (double)l.n, (unsigned long long)conns, (double)l.paced_ms / (double)l.n,
           l.last_error);
    rc = l.failed == 0 ? 0 : 1;
out:
    aws_iot_sync_release(&s);
    aws_iot_free(l.c);
    event_base_free(base);
    return rc;
}
