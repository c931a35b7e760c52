// A fork-join pool of persistent threads. One job at a time: the caller publishes (fn, ctx,
// count), bumps `generation`, takes task indices from a shared counter like every worker, then
// waits until each worker has checked out of the job.
//
// Idle workers spin (with pause) for a short time, because in a forward pass the next matmul
// usually follows within microseconds; after that they sleep on a condition variable so a pool
// sharing its cores with another process does not burn them.
#define _GNU_SOURCE
#include "arbor_kernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

struct arbor_pool {
    int threads;   // including the caller
    int nworkers;  // threads - 1
    int64_t spin_ns;
    pthread_t *workers;

    pthread_mutex_t run_mu;  // serialises callers of arbor_pool_run
    pthread_mutex_t mu;      // guards sleeping on cv_work / cv_done
    pthread_cond_t cv_work;
    pthread_cond_t cv_done;

    // The current job; written by the caller before `generation` is released.
    arbor_task_fn fn;
    void *ctx;
    int64_t count;
    _Atomic int64_t next;       // next task index to hand out
    _Atomic int pending;        // workers not yet done with the current job
    _Atomic uint64_t generation;
    _Atomic int stop;
};

static _Thread_local const arbor_pool *tls_running_pool = NULL;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void run_tasks(arbor_pool *p) {
    const arbor_pool *saved = tls_running_pool;
    tls_running_pool = p;
    const int64_t count = p->count;
    for (;;) {
        const int64_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= count) break;
        p->fn(p->ctx, i);
    }
    tls_running_pool = saved;
}

/// Spin until `*v != old` or `spin_ns` passes; returns the last value seen.
static uint64_t spin_while_equal(_Atomic uint64_t *v, uint64_t old, int64_t spin_ns) {
    uint64_t cur = atomic_load_explicit(v, memory_order_acquire);
    if (cur != old || spin_ns <= 0) return cur;
    const int64_t deadline = now_ns() + spin_ns;
    for (int k = 1;; k++) {
        cpu_relax();
        cur = atomic_load_explicit(v, memory_order_acquire);
        if (cur != old) return cur;
        if ((k & 63) == 0 && now_ns() > deadline) return cur;
    }
}

static void *worker_main(void *arg) {
    arbor_pool *p = arg;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = spin_while_equal(&p->generation, seen, p->spin_ns);
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
                pthread_cond_wait(&p->cv_work, &p->mu);
            }
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        run_tasks(p);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

arbor_pool *arbor_pool_create(int threads, int64_t spin_ns) {
    arbor_pool *p = calloc(1, sizeof(arbor_pool));
    if (!p) return NULL;
    p->threads = threads < 1 ? 1 : threads;
    p->nworkers = p->threads - 1;
    p->spin_ns = spin_ns < 0 ? 0 : spin_ns;
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->generation, 0);
    atomic_init(&p->stop, 0);
    if (p->nworkers > 0) {
        p->workers = calloc((size_t)p->nworkers, sizeof(pthread_t));
        for (int i = 0; i < p->nworkers; i++) {
            if (!p->workers || pthread_create(&p->workers[i], NULL, worker_main, p) != 0) {
                // Run with the workers that did start.
                p->nworkers = i;
                p->threads = i + 1;
                break;
            }
        }
    }
    return p;
}

void arbor_pool_destroy(arbor_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->run_mu);
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++) pthread_join(p->workers[i], NULL);
    pthread_mutex_unlock(&p->run_mu);
    free(p->workers);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_mu);
    free(p);
}

int arbor_pool_threads(const arbor_pool *p) { return p ? p->threads : 1; }

void arbor_pool_run(arbor_pool *p, int64_t count, arbor_task_fn fn, void *ctx) {
    if (count <= 0) return;
    // Serial cases: no workers, a single task, or a nested call from inside a task (of any pool:
    // waiting for this pool from one of its own tasks would deadlock).
    if (!p || p->nworkers == 0 || count == 1 || tls_running_pool != NULL) {
        for (int64_t i = 0; i < count; i++) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&p->run_mu);
    p->fn = fn;
    p->ctx = ctx;
    p->count = count;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->nworkers, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);  // publishes the job
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);

    run_tasks(p);

    // Wait for every worker to leave the job (it may still hold `next` or read `fn`).
    if (atomic_load_explicit(&p->pending, memory_order_acquire) != 0) {
        const int64_t deadline = now_ns() + p->spin_ns;
        for (int k = 1; atomic_load_explicit(&p->pending, memory_order_acquire) != 0; k++) {
            cpu_relax();
            if ((k & 63) == 0 && now_ns() > deadline) {
                pthread_mutex_lock(&p->mu);
                while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0) {
                    pthread_cond_wait(&p->cv_done, &p->mu);
                }
                pthread_mutex_unlock(&p->mu);
                break;
            }
        }
    }
    pthread_mutex_unlock(&p->run_mu);
}
