/*
 * sl_curl.c - loads libcurl on first use (see sl_curl.h for why).
 */
#include "sl_curl.h"

#include <dlfcn.h>
#include <string.h>

sl_curl_api sl_curl;

/* Sonames to try: Debian's libcurl4 (OpenSSL), its GnuTLS flavour, and a
 * development symlink as a last resort. */
static const char *const sl_curl_names[] = {
  "libcurl.so.4", "libcurl-gnutls.so.4", "libcurl.so", NULL
};

/* Each table slot and the symbol that fills it. */
#define SL_CURL_SYMS(X) \
  X(global_init) X(version) X(easy_init) X(easy_setopt) X(easy_getinfo) \
  X(easy_cleanup) X(easy_strerror) X(multi_init) X(multi_setopt) \
  X(multi_add_handle) X(multi_remove_handle) X(multi_assign) \
  X(multi_socket_action) X(multi_info_read) X(multi_cleanup) \
  X(slist_append) X(slist_free_all)

int sl_curl_load(const char **why) {
  static int state;   /* 0: not tried, 1: loaded, -1: failed */
  static const char *failure;
  void *lib = NULL;
  int i;
  if (state) {
    if (state < 0) *why = failure;
    return state > 0 ? 0 : -1;
  }
  for (i = 0; sl_curl_names[i] && !lib; i++) lib = dlopen(sl_curl_names[i], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    failure = "libcurl.so.4 not found (install libcurl4)";
    state = -1;
    *why = failure;
    return -1;
  }
#define SL_CURL_SYM(name) \
  *(void **)&sl_curl.name = dlsym(lib, "curl_" #name); \
  if (!sl_curl.name) { failure = "libcurl lacks curl_" #name; state = -1; *why = failure; return -1; }
  SL_CURL_SYMS(SL_CURL_SYM)
#undef SL_CURL_SYM
  if (sl_curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    failure = "curl_global_init failed";
    state = -1;
    *why = failure;
    return -1;
  }
  state = 1;
  return 0;
}
