/* Capped runs: ws_run_capped lets at most N threads, its caller included,
 * work on what it starts. The caller's outside slot is the team and holds
 * N seats. A worker without a seat may take a task of a capped run only by
 * taking a free seat in it; a worker with a seat takes only tasks of its
 * team, and gives the seat up when it finds none (its deque is then
 * empty, so every task on a participant's deque belongs to its team);
 * only a worker between tasks takes a seat.
 * Thieves skip victims whose team they may not join; a task taken in a
 * race with a victim that changed teams is held for a thread that may run
 * it. Seats are numbered so that per-seat state is used by one thread at
 * a time: ws_seat_index(). */
#include "deque.h"

#include <sched.h>

/* The team of the thread that made t: the owner of its group (waiting
 * for it, so in the same team until t has run), the thread running its
 * DAG, or the thread that forked it. Tasks submitted with ws_submit belong
 * to no team. */
static ws__team *ws__task_team(const ws_task *t) {
    switch (t->kind) {
    case WS__TASK_GROUP:
        return ws__team_of(((const ws_group *)t->owner)->self);
    case WS__TASK_NODE:
        return ws__team_of(((const ws_dag *)t->owner)->waiter);
    case WS__TASK_FORK: /* the forking thread: it waits in ws_join */
        return ws__team_of((ws__part *)t->owner);
    default:
        return NULL;
    }
}

static int ws__seat_take(ws__team *tm) {
    int cap = atomic_load_explicit(&tm->cap, memory_order_relaxed);
    for (int w = 0; w * 64 < cap; w++) {
        int bits = cap - w * 64 < 64 ? cap - w * 64 : 64;
        uint64_t all = bits == 64 ? ~0ull : (1ull << bits) - 1;
        uint64_t cur = atomic_load_explicit(&tm->seats[w], memory_order_relaxed);
        while ((cur & all) != all) {
            int s = __builtin_ctzll(~cur);
            /* acquire: what the seat's last holder did is visible. */
            if (atomic_compare_exchange_weak_explicit(&tm->seats[w], &cur, cur | (1ull << s), memory_order_acquire,
                                                      memory_order_relaxed))
                return w * 64 + s;
        }
    }
    return -1;
}

static bool ws__team_full(ws__team *tm) {
    int cap = atomic_load_explicit(&tm->cap, memory_order_relaxed);
    for (int w = 0; w * 64 < cap; w++) {
        int bits = cap - w * 64 < 64 ? cap - w * 64 : 64;
        uint64_t all = bits == 64 ? ~0ull : (1ull << bits) - 1;
        if ((atomic_load_explicit(&tm->seats[w], memory_order_relaxed) & all) != all)
            return false;
    }
    return true;
}

bool ws__may_steal_from(ws__part *self, ws__part *victim) {
    ws__team *vt = ws__team_of(victim);
    ws__team *st = atomic_load_explicit(&self->team, memory_order_relaxed);
    if (vt == st)
        return true;
    return !st && !self->outside && !self->helping && vt && !ws__team_full(vt);
}

bool ws__admit(ws__part *self, ws_task *t) {
    ws__team *tt = ws__task_team(t);
    ws__team *st = atomic_load_explicit(&self->team, memory_order_relaxed);
    if (tt == st)
        return true;
    /* Only a worker between tasks joins a team: one waiting inside an
     * uncapped task would carry that task's later work into the team. */
    if (st || self->outside || self->helping || !tt)
        return false;
    int s = ws__seat_take(tt);
    if (s < 0)
        return false;
    self->seat = s;
    atomic_store_explicit(&self->team, tt, memory_order_release);
    return true;
}

void ws__hold(ws_pool *p, ws_task *t) {
    ws__team *tt = ws__task_team(t);
    if (!tt) {
        ws__submit_queue(p, t);
        return;
    }
    t->next = NULL;
    pthread_mutex_lock(&tt->held_lock);
    if (tt->held_tail)
        tt->held_tail->next = t;
    else
        tt->held_head = t;
    tt->held_tail = t;
    atomic_fetch_add_explicit(&tt->nheld, 1, memory_order_relaxed);
    pthread_mutex_unlock(&tt->held_lock);
    ws__wake_part(tt->caller); /* seated for as long as t exists */
}

ws_task *ws__team_take_held(ws__part *self) {
    ws__team *tm = atomic_load_explicit(&self->team, memory_order_relaxed);
    if (!tm || atomic_load_explicit(&tm->nheld, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&tm->held_lock);
    ws_task *t = tm->held_head;
    if (t) {
        tm->held_head = t->next;
        if (!tm->held_head)
            tm->held_tail = NULL;
        atomic_fetch_sub_explicit(&tm->nheld, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&tm->held_lock);
    return t;
}

void ws__team_leave(ws__part *self) {
    ws__team *tm = atomic_load_explicit(&self->team, memory_order_relaxed);
    if (!tm || self->outside)
        return;
    int s = self->seat;
    self->seat = -1;
    atomic_store_explicit(&self->team, NULL, memory_order_relaxed);
    /* release: the caller waiting for its seats sees everything this
     * worker did for the team; the next holder of the seat too. */
    atomic_fetch_and_explicit(&tm->seats[s / 64], ~(1ull << (s % 64)), memory_order_release);
}

/* Wakes whoever can run what self just pushed: in a full team only its
 * members can, and of those only the caller parks while seated. */
void ws__wake_for(ws__part *self) {
    ws__team *tm = atomic_load_explicit(&self->team, memory_order_relaxed);
    if (tm && ws__team_full(tm)) {
        if (tm->caller != self)
            ws__wake_part(tm->caller);
        return;
    }
    ws__wake_one(self->pool);
}

static bool ws__team_alone(ws__team *tm) {
    for (int w = 0; w < WS__SEAT_WORDS; w++)
        if (atomic_load_explicit(&tm->seats[w], memory_order_acquire) != (w == 0 ? 1u : 0u))
            return false;
    return true;
}

int ws_run_capped(ws_pool *p, int max_participants, ws_task_fn fn, void *arg) {
    if (!p || !fn || max_participants < 1)
        return WS_EINVAL;
    ws__part *self = ws__self;
    if (self && self->pool == p) /* already working for p: within its seats */
        return ws_run(p, fn, arg);
    if (!(self = ws__enter(p)))
        return WS_ENOMEM;
    ws__team *tm = &self->own_team;
    atomic_store_explicit(&tm->cap, max_participants < WS__MAX_SEATS ? max_participants : WS__MAX_SEATS,
                          memory_order_relaxed);
    for (int w = 0; w < WS__SEAT_WORDS; w++)
        atomic_store_explicit(&tm->seats[w], w == 0, memory_order_relaxed);
    self->seat = 0;
    /* release: a thief that sees the team sees its seats set up. */
    atomic_store_explicit(&self->team, tm, memory_order_release);
    ws_task t = WS_TASK_INIT(fn, arg);
    ws__run(self, &t);
    ws__dag_flush(self);
    /* Every task fn started is done; workers still seated give their seat
     * up as soon as they look for more, and then the team may go. */
    for (int spins = 0; !ws__team_alone(tm); spins++) {
        if (spins < 64)
            ws__cpu_relax();
        else
            sched_yield();
    }
    atomic_store_explicit(&self->team, NULL, memory_order_relaxed);
    self->seat = -1;
    ws__leave(self);
    return 0;
}

int ws_seat_index(void) {
    ws__part *self = ws__self;
    return self && atomic_load_explicit(&self->team, memory_order_relaxed) ? self->seat : -1;
}
