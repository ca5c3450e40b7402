/*
 * sl_curl.h - libcurl, loaded when sluice.http is first used.
 *
 * Linking libcurl would load it and its dependencies (TLS, HTTP/2, LDAP,
 * Kerberos, ... some thirty shared libraries) into every sluice process
 * and every program embedding libsluice, costing start-up time and
 * megabytes whether or not they make a request.  So sl_http.c calls curl
 * through this table, which sl_curl_load fills with dlopen/dlsym the
 * first time `sluice.http` is required.  The macros below keep the
 * call sites reading as plain curl calls.
 */
#ifndef SL_CURL_H
#define SL_CURL_H

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

typedef struct sl_curl_api {
  CURLcode (*global_init)(long flags);
  char *(*version)(void);
  CURL *(*easy_init)(void);
  CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
  CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
  void (*easy_cleanup)(CURL *h);
  const char *(*easy_strerror)(CURLcode code);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_setopt)(CURLM *m, CURLMoption opt, ...);
  CURLMcode (*multi_add_handle)(CURLM *m, CURL *h);
  CURLMcode (*multi_remove_handle)(CURLM *m, CURL *h);
  CURLMcode (*multi_assign)(CURLM *m, curl_socket_t s, void *p);
  CURLMcode (*multi_socket_action)(CURLM *m, curl_socket_t s, int ev, int *running);
  CURLMsg *(*multi_info_read)(CURLM *m, int *left);
  CURLMcode (*multi_cleanup)(CURLM *m);
  struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
  void (*slist_free_all)(struct curl_slist *l);
} sl_curl_api;

extern sl_curl_api sl_curl;

/* Loads libcurl and calls curl_global_init, once: 0, or -1 with *why
 * saying what failed (a static or dlerror string). */
int sl_curl_load(const char **why);

#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init sl_curl.global_init
#define curl_version sl_curl.version
#define curl_easy_init sl_curl.easy_init
#define curl_easy_setopt sl_curl.easy_setopt
#define curl_easy_getinfo sl_curl.easy_getinfo
#define curl_easy_cleanup sl_curl.easy_cleanup
#define curl_easy_strerror sl_curl.easy_strerror
#define curl_multi_init sl_curl.multi_init
#define curl_multi_setopt sl_curl.multi_setopt
#define curl_multi_add_handle sl_curl.multi_add_handle
#define curl_multi_remove_handle sl_curl.multi_remove_handle
#define curl_multi_assign sl_curl.multi_assign
#define curl_multi_socket_action sl_curl.multi_socket_action
#define curl_multi_info_read sl_curl.multi_info_read
#define curl_multi_cleanup sl_curl.multi_cleanup
#define curl_slist_append sl_curl.slist_append
#define curl_slist_free_all sl_curl.slist_free_all

#endif
