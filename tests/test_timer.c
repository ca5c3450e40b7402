/*
 * test_timer.c - unit tests of the timer heap (lib/sl_timer.c).
 *
 * The heap decides when every sleep, wait timeout and scope deadline
 * fires, and in which order timers with equal deadlines fire, which is
 * what makes virtual-clock runs repeatable.  Besides the cases one by
 * one, a randomized run checks it against a plain sorted array.
 *
 *   test_timer [seed]
 */
#include "../lib/sl_timer.h"
#include "sl_check.h"

#include <stdlib.h>
#include <string.h>

#define NTIMERS 64

static sl_timer timers[NTIMERS];

static void reset(sl_heap *h) {
  sl_heap_init(h);
  memset(timers, 0, sizeof timers);
}

static int less(const sl_timer *a, const sl_timer *b) {
  return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

/* Every node knows its index and no child is less than its parent. */
static int heap_ok(const sl_heap *h) {
  uint32_t i;
  for (i = 0; i < h->len; i++) {
    if (h->items[i]->idx != i + 1) return 0;
    if (i > 0 && less(h->items[i], h->items[(i - 1) / 2])) return 0;
  }
  return 1;
}

static sl_timer *pop(sl_heap *h) {
  sl_timer *m = sl_heap_min(h);
  if (m) sl_heap_remove(h, m);
  return m;
}

static void test_empty(void) {
  sl_heap h;
  reset(&h);
  CHECK(sl_heap_min(&h) == NULL);
  CHECK(!sl_timer_armed(&timers[0]));
  sl_heap_remove(&h, &timers[0]);        /* not armed: a no-op */
  CHECK(h.len == 0);
  sl_heap_free(&h);
}

static void test_order(void) {
  static const double d[] = {5, 3, 9, 1, 7, 2, 8, 0.5, 6, 4};
  sl_heap h;
  double last = -1;
  int i;
  reset(&h);
  for (i = 0; i < 10; i++) CHECK(sl_heap_push(&h, &timers[i], d[i]) == 0);
  CHECK(h.len == 10 && heap_ok(&h));
  for (i = 0; i < 10; i++) {
    sl_timer *m = pop(&h);
    CHECK(m != NULL && m->deadline >= last && !sl_timer_armed(m));
    last = m->deadline;
    CHECK(heap_ok(&h));
  }
  CHECK(last == 9 && pop(&h) == NULL);
  sl_heap_free(&h);
}

/* Equal deadlines fire in arming order, whatever was armed in between. */
static void test_fifo_ties(void) {
  sl_heap h;
  int i;
  reset(&h);
  for (i = 0; i < 20; i++)
    CHECK(sl_heap_push(&h, &timers[i], (i % 3 == 0) ? 0.5 : 1.0) == 0);
  for (i = 0; i < 20; i += 3) CHECK(pop(&h) == &timers[i]);      /* the 0.5s */
  for (i = 0; i < 20; i++)
    if (i % 3) CHECK(pop(&h) == &timers[i]);                      /* then 1.0s */
  CHECK(h.len == 0);
  sl_heap_free(&h);
}

static void test_remove_middle(void) {
  sl_heap h;
  int i;
  reset(&h);
  for (i = 0; i < 31; i++) CHECK(sl_heap_push(&h, &timers[i], (double)((i * 7) % 31)) == 0);
  /* remove nodes sitting in the middle of the array, then the last one */
  for (i = 0; i < 5; i++) {
    sl_timer *t = h.items[h.len / 2];
    sl_heap_remove(&h, t);
    CHECK(!sl_timer_armed(t) && heap_ok(&h));
    sl_heap_remove(&h, t);               /* twice: harmless */
    CHECK(heap_ok(&h));
  }
  sl_heap_remove(&h, h.items[h.len - 1]);
  CHECK(h.len == 25 && heap_ok(&h));
  {
    double last = -1;
    sl_timer *m;
    while ((m = pop(&h))) {
      CHECK(m->deadline >= last);
      last = m->deadline;
    }
  }
  sl_heap_free(&h);
}

/* Re-arming moves a timer, keeps one entry, and counts as a new arming
 * for ties: it goes after the timers already armed at that deadline. */
static void test_rearm(void) {
  sl_heap h;
  int i;
  reset(&h);
  for (i = 0; i < 5; i++) CHECK(sl_heap_push(&h, &timers[i], 2.0) == 0);
  CHECK(sl_heap_push(&h, &timers[0], 2.0) == 0);   /* same deadline, later seq */
  CHECK(h.len == 5 && heap_ok(&h));
  CHECK(sl_heap_push(&h, &timers[4], 1.0) == 0);   /* earlier */
  CHECK(sl_heap_push(&h, &timers[2], 3.0) == 0);   /* later */
  CHECK(h.len == 5 && heap_ok(&h));
  CHECK(pop(&h) == &timers[4]);
  CHECK(pop(&h) == &timers[1]);
  CHECK(pop(&h) == &timers[3]);
  CHECK(pop(&h) == &timers[0]);
  CHECK(pop(&h) == &timers[2]);
  CHECK(pop(&h) == NULL);
  CHECK(sl_heap_push(&h, &timers[2], 1.0) == 0);   /* popped timers re-arm too */
  CHECK(h.len == 1 && sl_heap_min(&h) == &timers[2]);
  sl_heap_free(&h);
  CHECK(h.len == 0 && h.items == NULL);
}

/* Growing past the initial capacity keeps every index right. */
static void test_grow(void) {
  static sl_timer many[1000];
  sl_heap h;
  int i;
  sl_heap_init(&h);
  memset(many, 0, sizeof many);
  for (i = 0; i < 1000; i++) CHECK(sl_heap_push(&h, &many[i], (double)(999 - i)) == 0);
  CHECK(h.len == 1000 && h.cap >= 1000 && heap_ok(&h));
  for (i = 999; i >= 0; i--) CHECK(pop(&h) == &many[i]);
  sl_heap_free(&h);
}

/* ---- randomized: the heap against a sorted array ---- */

#define POOL 256
#define OPS 200000

static uint64_t rng_state;

static uint32_t rng(void) {       /* xorshift64*, repeatable from the seed */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

/* The reference: armed timers sorted by (deadline, arming order). */
typedef struct ref_entry { double deadline; uint64_t order; int id; } ref_entry;
static ref_entry ref[POOL];
static int nref;

static void ref_remove(int id) {
  int i;
  for (i = 0; i < nref; i++) {
    if (ref[i].id == id) {
      memmove(&ref[i], &ref[i + 1], (size_t)(nref - i - 1) * sizeof ref[0]);
      nref--;
      return;
    }
  }
}

static void ref_insert(int id, double deadline, uint64_t order) {
  int i;
  ref_remove(id);                       /* re-arming replaces the entry */
  i = nref;
  while (i > 0 && (ref[i - 1].deadline > deadline ||
                   (ref[i - 1].deadline == deadline && ref[i - 1].order > order))) {
    ref[i] = ref[i - 1];
    i--;
  }
  ref[i].deadline = deadline;
  ref[i].order = order;
  ref[i].id = id;
  nref++;
}

static void test_random(void) {
  static sl_timer pool[POOL];
  sl_heap h;
  uint64_t order = 0;
  int op;
  sl_heap_init(&h);
  memset(pool, 0, sizeof pool);
  nref = 0;
  for (op = 0; op < OPS; op++) {
    uint32_t r = rng() % 100;
    int id = (int)(rng() % POOL);
    if (r < 50) {                       /* arm or re-arm; few deadlines: many ties */
      double d = (double)(rng() % 32) * 0.25;
      CHECK(sl_heap_push(&h, &pool[id], d) == 0);
      ref_insert(id, d, order++);
    } else if (r < 70) {                /* cancel, armed or not */
      sl_heap_remove(&h, &pool[id]);
      ref_remove(id);
    } else {                            /* fire the earliest */
      sl_timer *m = pop(&h);
      CHECK((m == NULL) == (nref == 0));
      if (m) {
        CHECK(m == &pool[ref[0].id] && m->deadline == ref[0].deadline);
        ref_remove(ref[0].id);
      }
    }
    CHECK(h.len == (uint32_t)nref);
    if (op % 1024 == 0) CHECK(heap_ok(&h));
  }
  while (nref > 0) {                    /* drain: the whole order matches */
    CHECK(pop(&h) == &pool[ref[0].id]);
    ref_remove(ref[0].id);
  }
  CHECK(h.len == 0);
  sl_heap_free(&h);
}

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 0x5eed1u;
  rng_state = seed ? seed : 1;
  RUN(test_empty);
  RUN(test_order);
  RUN(test_fifo_ties);
  RUN(test_remove_middle);
  RUN(test_rearm);
  RUN(test_grow);
  RUN(test_random);
  if (sl_failed) fprintf(stderr, "(random seed %llu)\n", (unsigned long long)seed);
  return sl_check_done();
}
