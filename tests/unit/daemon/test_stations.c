/*
 * daemon/stations.c: the stations file as an operator writes it, right and wrong (docs/daemon.md):
 * defaults, "*", the rate and burst rules, and errors that name the file, the station and the key
 * while loading nothing.
 */
#include <stdio.h>
#include <string.h>

#include "core/mem.h"
#include "core/util.h"
#include "daemon/daemon.h"
#include "tests/harness/tt.h"

static const char *write_file(const char *name, const char *text)
{
    static char path[600];
    struct err e = ERR_INIT;
    snprintf(path, sizeof(path), "%s/%s", tt_tmpdir(), name);
    if (file_write_atomic(path, text, strlen(text), 0600, false, &e) != 0) {
        fprintf(stderr, "  %s\n", e.msg);
    }
    return path;
}

static int test_load(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct stations *s = NULL;
    char **names = NULL;
    size_t n = 0;
    const struct station *st;
    const char *p = write_file(
        "ok.json", "{\"stations\": {"
                   "\"line1\": {},"
                   "\"line2\": {\"cas\": [\"devices\", \"sensors\"], \"profiles\": [\"*\"],"
                   "            \"rate\": 0.5, \"burst\": 3, \"admin\": true,"
                   "            \"installer\": true},"
                   "\"fast\": {\"rate\": 200, \"cas\": [\"*\", \"devices\"]},"
                   "\"free\": {\"rate\": 0, \"burst\": 0}}}");
    CHECK((s = stations_load(p, "devices", "device", &e)) != NULL);
    CHECK_INT_EQ(stations_count(s), 4);
    /* defaults: the default CA and profile, 50/s, burst max(rate, 1), not admin */
    CHECK((st = stations_find(s, "line1")) != NULL);
    CHECK(station_may_use_ca(st, "devices"));
    CHECK(!station_may_use_ca(st, "sensors"));
    CHECK(station_may_use_profile(st, "device"));
    CHECK(!station_may_use_profile(st, "station"));
    CHECK_INT_EQ(st->rate * 1000, 50000);
    CHECK_INT_EQ(st->burst * 1000, 50000);
    CHECK(!st->admin);
    CHECK(!st->installer);
    CHECK((st = stations_find(s, "line2")) != NULL);
    CHECK(st->installer);
    CHECK(station_may_use_ca(st, "sensors"));
    CHECK(!station_may_use_ca(st, "other"));
    CHECK(station_may_use_profile(st, "anything"));
    CHECK_INT_EQ(st->rate * 1000, 500);
    CHECK_INT_EQ(st->burst * 1000, 3000);
    CHECK(st->admin);
    CHECK((st = stations_find(s, "fast")) != NULL);
    CHECK(station_may_use_ca(st, "other"));
    CHECK_INT_EQ(st->burst * 1000, 200000);
    CHECK((st = stations_find(s, "free")) != NULL);
    CHECK_INT_EQ(st->rate * 1000, 0); /* no limit: a burst of 0 is fine then */
    CHECK(stations_find(s, "LINE1") == NULL);
    CHECK(stations_find(s, "") == NULL);
    /* the CAs the stations name, once each, "*" not being one */
    stations_ca_names(s, &names, &n);
    CHECK_INT_EQ(n, 2);
    CHECK_STR_EQ(names[0], "devices");
    CHECK_STR_EQ(names[1], "sensors");
    stations_free(s);
    /* no default CA in the configuration: "*" (the CA jitrd serves by default) */
    CHECK((s = stations_load(p, "", "device", &e)) != NULL);
    CHECK(station_may_use_ca(stations_find(s, "line1"), "whatever"));
    stations_free(s);
    /* no file configured: nobody is a station */
    CHECK((s = stations_load("", "devices", "device", &e)) != NULL);
    CHECK_INT_EQ(stations_count(s), 0);
out:
    for (size_t i = 0; i < n; i++) {
        xfree(names[i]);
    }
    xfree(names);
    stations_free(s);
    return rc;
}

static int test_bad(void)
{
    int rc = 0;
    struct err e = ERR_INIT;
    struct stations *s = NULL;
    static const struct {
        const char *text, *says;
    } bad[] = {
        { "{\"stations\": {\"l1\": {\"profile\": [\"device\"]}}}", "unknown key 'profile'" },
        { "{\"stations\": {\"l1\": {\"cas\": \"devices\"}}}", "'cas' must be an array" },
        { "{\"stations\": {\"l1\": {\"cas\": [\"../x\"]}}}", "'cas'[0] is not a name" },
        { "{\"stations\": {\"l1\": {\"rate\": -1}}}", "'rate' must be a number" },
        { "{\"stations\": {\"l1\": {\"rate\": \"10\"}}}", "'rate' must be a number" },
        { "{\"stations\": {\"l1\": {\"rate\": 5, \"burst\": 0.5}}}", "'burst' must be at least 1" },
        { "{\"stations\": {\"l1\": {\"admin\": \"yes\"}}}", "'admin' must be true or false" },
        { "{\"stations\": {\"l1\": {\"installer\": 1}}}", "'installer' must be true or false" },
        { "{\"stations\": {\"l 1\": {}}}", "not a valid station name" },
        { "{\"stations\": {\"l1\": []}}", "must be an object" },
        { "{\"stations\": []}", "'stations' must be an object" },
        { "{\"station\": {}}", "unknown key 'station'" },
        { "{\"stations\": {\"l1\": {}, \"l1\": {}}}", "duplicate" },
        { "{\"stations\": ", "ok-bad" },
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char name[32];
        snprintf(name, sizeof(name), "bad%zu.json", i);
        const char *p = write_file(name, bad[i].text);
        err_clear(&e);
        s = stations_load(p, "devices", "device", &e);
        if (s != NULL) {
            TT_FAIL("%s accepted", bad[i].text);
        }
        CHECK_INT_EQ(e.code, ERRC_INVALID);
        CHECK_STR_CONTAINS(e.msg, name); /* the file is named */
        if (strcmp(bad[i].says, "ok-bad") != 0) {
            CHECK_STR_CONTAINS(e.msg, bad[i].says);
        }
    }
    err_clear(&e);
    CHECK(stations_load("/nonexistent/stations.json", "devices", "device", &e) == NULL);
    CHECK_INT_EQ(e.code, ERRC_NOT_FOUND);
out:
    stations_free(s);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct tt_case cases[] = {
        { "load", test_load },
        { "bad", test_bad },
    };
    return tt_main(argc, argv, cases, ARRAY_LEN(cases));
}
