/* Unit tests for web/metrics: counting and the Prometheus text exposition format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "web/metrics.h"

static const char *const names[] = {"/", "/api/v1/login", "other"};

/* Renders m into a NUL-terminated heap string (caller frees). */
static char *render(const struct web_metrics *m)
{
    struct html_buf b;
    html_buf_init(&b);
    assert_int_equal(web_metrics_render(m, &b), 0);
    size_t len = 0;
    char *text = html_buf_take(&b, &len);
    assert_non_null(text);
    html_buf_free(&b);
    return text;
}

static void requests_are_counted_by_route_and_status(void **state)
{
    (void)state;
    struct web_metrics *m = web_metrics_create(names, 3);
    assert_non_null(m);
    web_metrics_observe(m, 1, 401, 20000);
    web_metrics_observe(m, 1, 401, 30000);
    web_metrics_observe(m, 1, 200, 40000);
    web_metrics_observe(m, 0, 599, 10);
    char *text = render(m);
    assert_non_null(strstr(
        text, "profile_web_http_requests_total{route=\"/api/v1/login\",status=\"401\"} 2\n"));
    assert_non_null(strstr(
        text, "profile_web_http_requests_total{route=\"/api/v1/login\",status=\"200\"} 1\n"));
    /* a status outside the known set is "other", so labels stay bounded */
    assert_non_null(
        strstr(text, "profile_web_http_requests_total{route=\"/\",status=\"other\"} 1\n"));
    /* routes without requests have no series */
    assert_null(strstr(text, "route=\"other\""));
    free(text);
    web_metrics_free(m);
}

static void histogram_buckets_are_cumulative_with_inf_equal_to_count(void **state)
{
    (void)state;
    struct web_metrics *m = web_metrics_create(names, 3);
    assert_non_null(m);
    web_metrics_observe(m, 0, 200, 500);      /* 0.5 ms: first bucket */
    web_metrics_observe(m, 0, 200, 3000);     /* 3 ms: le=0.005 */
    web_metrics_observe(m, 0, 200, 20000000); /* 20 s: only +Inf */
    char *text = render(m);
    const char *prefix = "profile_web_http_request_duration_seconds_bucket{route=\"/\",le=";
    assert_non_null(strstr(text, "le=\"0.001\"} 1\n"));
    assert_non_null(strstr(text, "le=\"0.0025\"} 1\n"));
    assert_non_null(strstr(text, "le=\"0.005\"} 2\n"));
    assert_non_null(strstr(text, "le=\"10\"} 2\n"));
    assert_non_null(strstr(text, "le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(text, prefix));
    assert_non_null(
        strstr(text, "profile_web_http_request_duration_seconds_count{route=\"/\"} 3\n"));
    assert_non_null(
        strstr(text, "profile_web_http_request_duration_seconds_sum{route=\"/\"} 20.003500\n"));
    free(text);
    web_metrics_free(m);
}

static void each_family_is_typed_once_before_its_samples(void **state)
{
    (void)state;
    struct web_metrics *m = web_metrics_create(names, 3);
    assert_non_null(m);
    web_metrics_observe(m, 2, 404, 100);
    char *text = render(m);
    const char *type_req = strstr(text, "# TYPE profile_web_http_requests_total counter\n");
    const char *type_hist =
        strstr(text, "# TYPE profile_web_http_request_duration_seconds histogram\n");
    assert_non_null(type_req);
    assert_non_null(type_hist);
    assert_true(type_req < strstr(text, "profile_web_http_requests_total{"));
    assert_true(type_hist < strstr(text, "profile_web_http_request_duration_seconds_bucket{"));
    assert_null(strstr(type_req + 1, "# TYPE profile_web_http_requests_total"));
    free(text);
    web_metrics_free(m);
}

static void out_of_range_routes_are_ignored_and_limits_enforced(void **state)
{
    (void)state;
    struct web_metrics *m = web_metrics_create(names, 3);
    assert_non_null(m);
    web_metrics_observe(m, 3, 200, 1);
    web_metrics_observe(NULL, 0, 200, 1);
    char *text = render(m);
    assert_null(strstr(text, "status=\"200\""));
    free(text);
    web_metrics_free(m);
    assert_null(web_metrics_create(names, 0));
    assert_null(web_metrics_create(names, METRICS_ROUTES_MAX + 1));
    web_metrics_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(requests_are_counted_by_route_and_status),
        cmocka_unit_test(histogram_buckets_are_cumulative_with_inf_equal_to_count),
        cmocka_unit_test(each_family_is_typed_once_before_its_samples),
        cmocka_unit_test(out_of_range_routes_are_ignored_and_limits_enforced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
