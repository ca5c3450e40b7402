/*
 * sl_timer.c - binary min-heap of timers with O(log n) removal.
 *
 * Each node remembers its index, so cancelling a sleep or a wait timeout
 * removes it in place instead of leaving a tombstone to fire later.
 * The array grows by doubling; in steady state arming allocates nothing.
 */
#include "sl_timer.h"

#include <stdlib.h>

static int sl_timer_less(const sl_timer *a, const sl_timer *b) {
  if (a->deadline != b->deadline) return a->deadline < b->deadline;
  return a->seq < b->seq;
}

static void sl_heap_set(sl_heap *h, uint32_t i, sl_timer *t) {
  h->items[i] = t;
  t->idx = i + 1;
}

static void sl_heap_up(sl_heap *h, uint32_t i) {
  sl_timer *t = h->items[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (!sl_timer_less(t, h->items[p])) break;
    sl_heap_set(h, i, h->items[p]);
    i = p;
  }
  sl_heap_set(h, i, t);
}

static void sl_heap_down(sl_heap *h, uint32_t i) {
  sl_timer *t = h->items[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= h->len) break;
    if (c + 1 < h->len && sl_timer_less(h->items[c + 1], h->items[c])) c++;
    if (!sl_timer_less(h->items[c], t)) break;
    sl_heap_set(h, i, h->items[c]);
    i = c;
  }
  sl_heap_set(h, i, t);
}

void sl_heap_init(sl_heap *h) {
  h->items = NULL;
  h->len = h->cap = 0;
  h->seq = 0;
}

void sl_heap_free(sl_heap *h) {
  free(h->items);
  sl_heap_init(h);
}

int sl_heap_push(sl_heap *h, sl_timer *t, double deadline) {
  if (t->idx) sl_heap_remove(h, t);
  if (h->len == h->cap) {
    uint32_t cap = h->cap ? h->cap * 2 : 64;
    sl_timer **items = realloc(h->items, cap * sizeof *items);
    if (!items) return -1;
    h->items = items;
    h->cap = cap;
  }
  t->deadline = deadline;
  t->seq = h->seq++;
  h->items[h->len] = t;
  t->idx = h->len + 1;
  h->len++;
  sl_heap_up(h, h->len - 1);
  return 0;
}

void sl_heap_remove(sl_heap *h, sl_timer *t) {
  uint32_t i;
  if (!t->idx) return;
  i = t->idx - 1;
  t->idx = 0;
  h->len--;
  if (i == h->len) return;
  sl_heap_set(h, i, h->items[h->len]);
  sl_heap_up(h, i);
  sl_heap_down(h, h->items[i]->idx - 1);
}
