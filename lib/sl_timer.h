/*
 * sl_timer.h - the runtime's one timer heap.
 *
 * Every sleep, wait timeout and scope deadline is an sl_timer node embedded
 * in its owner, kept in a binary min-heap ordered by (deadline, sequence).
 * The sequence number makes timers with equal deadlines fire in the order
 * they were armed, which keeps virtual-clock runs exactly repeatable.
 * One uv_timer_t (owned by the scheduler) is set to the heap's minimum.
 */
#ifndef SL_TIMER_H
#define SL_TIMER_H

#include <stdint.h>

typedef struct sl_timer sl_timer;
typedef void (*sl_timer_cb)(sl_timer *t);

struct sl_timer {
  double deadline;     /* seconds on the scheduler's clock */
  uint64_t seq;        /* arming order, breaks deadline ties */
  uint32_t idx;        /* position in the heap + 1; 0 when not armed */
  sl_timer_cb cb;
};

typedef struct sl_heap {
  sl_timer **items;
  uint32_t len;
  uint32_t cap;
  uint64_t seq;
} sl_heap;

void sl_heap_init(sl_heap *h);
void sl_heap_free(sl_heap *h);
/* Arms t at deadline (re-arms if already armed). Returns 0, or -1 if out of memory. */
int sl_heap_push(sl_heap *h, sl_timer *t, double deadline);
void sl_heap_remove(sl_heap *h, sl_timer *t);
static inline sl_timer *sl_heap_min(const sl_heap *h) { return h->len ? h->items[0] : 0; }
static inline int sl_timer_armed(const sl_timer *t) { return t->idx != 0; }

#endif
