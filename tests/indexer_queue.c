/* indexer/queue.h: the bounded FIFO between the indexer's stages.  What
 * its header promises: oldest first (also across the ring's wrap), a full
 * queue refuses a non-blocking push and holds a blocking one until there
 * is room, a pop waits at most its timeout, and a closed queue refuses
 * pushes and either drains (drop = 0) or stops its pops (drop = 1) while
 * wq_take still empties it; closing wakes every waiter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cdx.h"
#include "indexer/queue.h"

/* Queue items are pointers; these stand for items 1, 2, ... */
#define ITEM(i) ((void *)(uintptr_t)(i))
#define NUM(p) ((int)(uintptr_t)(p))

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
test_oldest_first_across_the_wrap(void **state)
{
	wq q;
	int next_in = 1, next_out = 1;
	(void)state;
	assert_int_equal(wq_init(&q, 4), 0);
	/* Three in, two out, repeatedly: head and tail wrap many times. */
	for (int round = 0; round < 10; round++) {
		for (int k = 0; k < 3 && wq_len(&q) < 4; k++)
			assert_int_equal(wq_push(&q, ITEM(next_in++), 0), 0);
		for (int k = 0; k < 2; k++)
			assert_int_equal(NUM(wq_pop(&q, 0)), next_out++);
		assert_int_equal(wq_len(&q), (size_t)(next_in - next_out));
	}
	while (wq_len(&q) > 0)
		assert_int_equal(NUM(wq_pop(&q, 0)), next_out++);
	assert_int_equal(next_out, next_in);
	wq_destroy(&q);
}

static void
test_full_queue_refuses_a_nonblocking_push(void **state)
{
	wq q;
	(void)state;
	assert_int_equal(wq_init(&q, 2), 0);
	assert_int_equal(wq_push(&q, ITEM(1), 0), 0);
	assert_int_equal(wq_push(&q, ITEM(2), 0), 0);
	assert_int_equal(wq_push(&q, ITEM(3), 0), CDX_EFULL);
	assert_int_equal(wq_len(&q), 2);
	assert_int_equal(NUM(wq_pop(&q, 0)), 1);
	assert_int_equal(wq_push(&q, ITEM(3), 0), 0);
	assert_int_equal(NUM(wq_pop(&q, 0)), 2);
	assert_int_equal(NUM(wq_pop(&q, 0)), 3);
	wq_destroy(&q);
}

struct pusher {
	wq *q;
	int item, rc, done;
	pthread_mutex_t mu;
};

static void *
push_main(void *arg)
{
	struct pusher *p = arg;
	int rc = wq_push(p->q, ITEM(p->item), 1);
	pthread_mutex_lock(&p->mu);
	p->rc = rc;
	p->done = 1;
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int
pusher_done(struct pusher *p)
{
	pthread_mutex_lock(&p->mu);
	int d = p->done;
	pthread_mutex_unlock(&p->mu);
	return d;
}

static void
test_blocking_push_waits_for_room(void **state)
{
	wq q;
	pthread_t th;
	(void)state;
	assert_int_equal(wq_init(&q, 1), 0);
	assert_int_equal(wq_push(&q, ITEM(1), 0), 0);
	struct pusher p = { &q, 2, -1, 0, PTHREAD_MUTEX_INITIALIZER };
	assert_int_equal(pthread_create(&th, NULL, push_main, &p), 0);
	usleep(100000);
	assert_false(pusher_done(&p));          /* no room yet */
	assert_int_equal(NUM(wq_pop(&q, 0)), 1);
	assert_int_equal(NUM(wq_pop(&q, 5000)), 2); /* the waiting push */
	pthread_join(th, NULL);
	assert_int_equal(p.rc, 0);
	wq_destroy(&q);
}

static void
test_pop_waits_at_most_its_timeout(void **state)
{
	wq q;
	(void)state;
	assert_int_equal(wq_init(&q, 2), 0);
	double t = now_s();
	assert_null(wq_pop(&q, 80));
	t = now_s() - t;
	assert_true(t >= 0.075);
	assert_true(t < 5.0);
	assert_null(wq_pop(&q, 0));
	assert_null(wq_take(&q));
	wq_destroy(&q);
}

static void
test_closed_to_drain(void **state)
{
	wq q;
	(void)state;
	assert_int_equal(wq_init(&q, 4), 0);
	for (int i = 1; i <= 3; i++)
		assert_int_equal(wq_push(&q, ITEM(i), 0), 0);
	wq_close(&q, 0);
	assert_int_equal(wq_push(&q, ITEM(9), 1), CDX_ECLOSED);
	for (int i = 1; i <= 3; i++)
		assert_int_equal(NUM(wq_pop(&q, -1)), i);
	/* Empty and closed: a pop without timeout returns at once. */
	assert_null(wq_pop(&q, -1));
	wq_destroy(&q);
}

static void
test_closed_to_drop(void **state)
{
	wq q;
	(void)state;
	assert_int_equal(wq_init(&q, 4), 0);
	for (int i = 1; i <= 3; i++)
		assert_int_equal(wq_push(&q, ITEM(i), 0), 0);
	wq_close(&q, 1);
	assert_null(wq_pop(&q, -1));
	assert_int_equal(wq_len(&q), 3);
	assert_int_equal(wq_push(&q, ITEM(9), 0), CDX_ECLOSED);
	/* Cleanup still gets every item, oldest first. */
	for (int i = 1; i <= 3; i++)
		assert_int_equal(NUM(wq_take(&q)), i);
	assert_null(wq_take(&q));
	wq_destroy(&q);
}

struct popper {
	wq *q;
	void *got;
	int done;
	pthread_mutex_t mu;
};

static void *
pop_main(void *arg)
{
	struct popper *p = arg;
	void *x = wq_pop(p->q, -1);
	pthread_mutex_lock(&p->mu);
	p->got = x;
	p->done = 1;
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void
test_close_wakes_waiters(void **state)
{
	wq full, empty;
	pthread_t tp, tc;
	(void)state;
	assert_int_equal(wq_init(&full, 1), 0);
	assert_int_equal(wq_init(&empty, 1), 0);
	assert_int_equal(wq_push(&full, ITEM(1), 0), 0);
	struct pusher p = { &full, 2, -1, 0, PTHREAD_MUTEX_INITIALIZER };
	struct popper c = { &empty, ITEM(7), 0, PTHREAD_MUTEX_INITIALIZER };
	assert_int_equal(pthread_create(&tp, NULL, push_main, &p), 0);
	assert_int_equal(pthread_create(&tc, NULL, pop_main, &c), 0);
	usleep(100000);
	assert_false(pusher_done(&p));
	wq_close(&full, 0);
	wq_close(&empty, 0);
	pthread_join(tp, NULL);
	pthread_join(tc, NULL);
	assert_int_equal(p.rc, CDX_ECLOSED);    /* the item was not taken */
	assert_int_equal(wq_len(&full), 1);
	assert_null(c.got);
	assert_int_equal(NUM(wq_pop(&full, -1)), 1);
	wq_destroy(&full);
	wq_destroy(&empty);
}

static void
test_destroy_accepts_a_zeroed_queue(void **state)
{
	wq q;
	(void)state;
	memset(&q, 0, sizeof(q));
	wq_destroy(&q);
	assert_null(q.v);
	assert_int_equal(wq_init(&q, 1), 0);
	wq_destroy(&q);
	assert_null(q.v);
	wq_destroy(&q);         /* twice: still a no-op */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oldest_first_across_the_wrap),
		cmocka_unit_test(test_full_queue_refuses_a_nonblocking_push),
		cmocka_unit_test(test_blocking_push_waits_for_room),
		cmocka_unit_test(test_pop_waits_at_most_its_timeout),
		cmocka_unit_test(test_closed_to_drain),
		cmocka_unit_test(test_closed_to_drop),
		cmocka_unit_test(test_close_wakes_waiters),
		cmocka_unit_test(test_destroy_accepts_a_zeroed_queue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
