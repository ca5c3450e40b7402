/*
 * test_queue.c - unit tests of the intrusive lists (lib/sl_queue.h).
 *
 * Every waiter queue in sluice is one of these lists, and cancellation
 * relies on two properties checked here: removal from the middle is
 * O(1) and leaves the node self-linked, so removing twice is harmless.
 */
#include "../lib/sl_queue.h"
#include "sl_check.h"

typedef struct item {
  int value;
  sl_queue link;
} item;

/* The list holds exactly the values in vals, in order, and its prev
 * pointers agree with its next pointers. */
static int holds(sl_queue *h, const int *vals, int n) {
  sl_queue *q;
  int i = 0;
  sl_queue_foreach(q, h) {
    if (i >= n || sl_queue_data(q, item, link)->value != vals[i]) return 0;
    if (q->next->prev != q || q->prev->next != q) return 0;
    i++;
  }
  for (q = h->prev; q != h; q = q->prev) i--;   /* walk back as far */
  return i == 0;
}

static void init_items(item *it, int n) {
  int i;
  for (i = 0; i < n; i++) {
    it[i].value = i;
    sl_queue_init(&it[i].link);
  }
}

static void test_init(void) {
  sl_queue h;
  item a;
  sl_queue_init(&h);
  init_items(&a, 1);
  CHECK(sl_queue_empty(&h));
  CHECK(!sl_queue_linked(&a.link));
  CHECK(holds(&h, NULL, 0));
}

static void test_insert_tail(void) {
  static const int want[] = {0, 1, 2, 3};
  sl_queue h;
  item it[4];
  int i;
  sl_queue_init(&h);
  init_items(it, 4);
  for (i = 0; i < 4; i++) sl_queue_insert_tail(&h, &it[i].link);
  CHECK(!sl_queue_empty(&h));
  CHECK(holds(&h, want, 4));
  CHECK(sl_queue_head(&h) == &it[0].link);
  CHECK(sl_queue_linked(&it[3].link));
}

static void test_insert_head(void) {
  static const int want[] = {3, 2, 1, 0};
  sl_queue h;
  item it[4];
  int i;
  sl_queue_init(&h);
  init_items(it, 4);
  for (i = 0; i < 4; i++) sl_queue_insert_head(&h, &it[i].link);
  CHECK(holds(&h, want, 4));
}

static void test_remove(void) {
  static const int no_middle[] = {0, 1, 3, 4}, ends_gone[] = {1, 3};
  sl_queue h;
  item it[5];
  int i;
  sl_queue_init(&h);
  init_items(it, 5);
  for (i = 0; i < 5; i++) sl_queue_insert_tail(&h, &it[i].link);
  sl_queue_remove(&it[2].link);
  CHECK(!sl_queue_linked(&it[2].link));
  CHECK(holds(&h, no_middle, 4));
  sl_queue_remove(&it[2].link);                 /* twice: no effect */
  CHECK(holds(&h, no_middle, 4));
  sl_queue_remove(&it[0].link);
  sl_queue_remove(&it[4].link);
  CHECK(holds(&h, ends_gone, 2));
  sl_queue_remove(&it[1].link);
  sl_queue_remove(&it[3].link);
  CHECK(sl_queue_empty(&h) && holds(&h, NULL, 0));
}

/* A task moves between queues (ready, then a wait queue) by remove and
 * insert; the node must arrive whole. */
static void test_move(void) {
  static const int a_left[] = {0, 2}, b_got[] = {1};
  sl_queue a, b;
  item it[3];
  int i;
  sl_queue_init(&a);
  sl_queue_init(&b);
  init_items(it, 3);
  for (i = 0; i < 3; i++) sl_queue_insert_tail(&a, &it[i].link);
  sl_queue_remove(&it[1].link);
  sl_queue_insert_tail(&b, &it[1].link);
  CHECK(holds(&a, a_left, 2));
  CHECK(holds(&b, b_got, 1));
}

/* Removing the current node while walking, keeping the next pointer,
 * as cancelling every child of a scope does. */
static void test_remove_while_walking(void) {
  static const int odd[] = {1, 3, 5, 7};
  sl_queue h, *q, *next;
  item it[8];
  int i;
  sl_queue_init(&h);
  init_items(it, 8);
  for (i = 0; i < 8; i++) sl_queue_insert_tail(&h, &it[i].link);
  for (q = h.next; q != &h; q = next) {
    next = q->next;
    if (sl_queue_data(q, item, link)->value % 2 == 0) sl_queue_remove(q);
  }
  CHECK(holds(&h, odd, 4));
  while (!sl_queue_empty(&h)) sl_queue_remove(sl_queue_head(&h));
  CHECK(holds(&h, NULL, 0));
}

static void test_data(void) {
  item x;
  x.value = 42;
  CHECK(sl_queue_data(&x.link, item, link) == &x);
  CHECK(sl_queue_data(&x.link, item, link)->value == 42);
}

int main(void) {
  RUN(test_init);
  RUN(test_insert_tail);
  RUN(test_insert_head);
  RUN(test_remove);
  RUN(test_move);
  RUN(test_remove_while_walking);
  RUN(test_data);
  return sl_check_done();
}
