/*
 * sl_queue.h - intrusive circular doubly-linked lists.
 *
 * Every waiter queue in sluice (ready queue, a task's awaiters, a scope's
 * children, a semaphore's waiters) links nodes embedded in the structs it
 * queues, so queueing and unqueueing never allocate and removal from the
 * middle (cancellation, timeout) is O(1).
 */
#ifndef SL_QUEUE_H
#define SL_QUEUE_H

#include <stddef.h>

typedef struct sl_queue {
  struct sl_queue *next;
  struct sl_queue *prev;
} sl_queue;

#define sl_queue_data(ptr, type, field) \
  ((type *)((char *)(ptr) - offsetof(type, field)))

#define sl_queue_foreach(q, h) \
  for ((q) = (h)->next; (q) != (h); (q) = (q)->next)

static inline void sl_queue_init(sl_queue *q) { q->next = q->prev = q; }

static inline int sl_queue_empty(const sl_queue *h) { return h->next == h; }

/* A node that is not on any list points at itself (after init/remove). */
static inline int sl_queue_linked(const sl_queue *q) { return q->next != q; }

static inline sl_queue *sl_queue_head(const sl_queue *h) { return h->next; }

static inline void sl_queue_insert_tail(sl_queue *h, sl_queue *q) {
  q->next = h;
  q->prev = h->prev;
  q->prev->next = q;
  h->prev = q;
}

static inline void sl_queue_insert_head(sl_queue *h, sl_queue *q) {
  q->next = h->next;
  q->prev = h;
  q->next->prev = q;
  h->next = q;
}

/* Unlinks q and leaves it self-linked, so removing twice is harmless. */
static inline void sl_queue_remove(sl_queue *q) {
  q->prev->next = q->next;
  q->next->prev = q->prev;
  q->next = q->prev = q;
}

#endif
