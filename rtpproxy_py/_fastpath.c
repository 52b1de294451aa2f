/* The compiled fast path (fastpath.py drives it): one thread, without the
 * GIL, relays the packets of latched RTP streams that need nothing done per
 * packet but counting and RTP analysis.
 *
 * A stream here is one direction: the latched party's connected socket (the
 * relay's "twin", see relay.py) is read with recvmmsg and every datagram is
 * sent unchanged with sendmmsg out of the other party's connected socket.
 * Per packet the thread counts it, keeps the arrival time (CLOCK_MONOTONIC,
 * the clock of time.monotonic(), read once per batch as the Python relay
 * reads its NOW once per loop iteration) and runs the analyzer's fast path
 * (media/analyzer.py): the 12-byte header, read as one 96-bit big-endian
 * integer, is compared with the header Python predicted; a match adds the
 * step and updates the interval and RFC 3550 jitter figures with exactly the
 * arithmetic of RtpAnalyzer._settle_times. Any other packet is relayed too,
 * and a snapshot of it (its first SNAP_PREFIX bytes, length, last byte and
 * arrival time) is queued for Python, which feeds it to the real analyzer and
 * arms the prediction again. The thread never makes an analysis decision of
 * its own, so the results are Python's.
 *
 * Everything the thread shares with Python is guarded by one mutex that the
 * thread holds while it handles a batch of ready sockets; Python takes it
 * (with the GIL released) to add, read or remove a stream. After remove()
 * returns the thread no longer touches the stream's descriptors.
 *
 * Datagrams are untrusted: nothing is read beyond the length recvmmsg gave;
 * fuzz/fastpath_fuzz.py drives feed(), the per-packet code without sockets.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64              /* datagrams per recvmmsg / sendmmsg */
#define ROUNDS 4              /* batches per ready socket before the next one */
#define RECV_SIZE 65536       /* whole UDP datagrams, as relay.RECV_SIZE */
#define SNAP_PREFIX 80        /* covers the CSRC list and extension header length */
#define QUEUE_CAP 64          /* unexpected packets waiting for Python, per stream */
#define SMALL_PACKET 128      /* -2: shorter packets are sent twice */
#define EVENTS 256

typedef unsigned __int128 u128;

typedef struct {
    uint8_t data[SNAP_PREFIX];
    uint32_t len;
    uint8_t last;
    double t;
} snap_t;

typedef struct {
    int used;
    int in_fd, out_fd;
    struct sockaddr_storage to;   /* where out_fd sends when it is not connected */
    socklen_t tolen;              /* 0: out_fd is connected */
    int dup;
    int analysis;
    int paused;               /* queue full: out of epoll until Python drains it */
    int attention;            /* on the attention list */
    /* counters since the last read */
    uint64_t npkts, nbytes;
    double last_rx;           /* -1: none since the last read */
    snap_t last;              /* the newest packet (latched sequence resync) */
    int has_last;
    /* analysis: the prediction and the state of the run of predicted packets */
    int armed;
    u128 expect, step;
    double ts_step;
    uint64_t run_n;
    double last_t, max_gap;
    int has_rec;
    double clock, prev_rts, jlast, jmax, jtotal;
    snap_t queue[QUEUE_CAP];
    int qlen;
} stream_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static stream_t **streams;
static int nstreams;          /* slots allocated */
static int *attention;        /* slots Python should drain */
static int nattention;
static int epfd = -1, notify_fd = -1, stop_fd = -1;
static pthread_t thread;
static int running;
/* totals for stats() */
static uint64_t total_pkts, total_queued, total_paused, total_wakeups;

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void snapshot(snap_t *s, const uint8_t *buf, size_t len, double t)
{
    size_t n = len < SNAP_PREFIX ? len : SNAP_PREFIX;
    memcpy(s->data, buf, n);
    s->len = (uint32_t)len;
    s->last = len ? buf[len - 1] : 0;
    s->t = t;
}

static void want_attention(int slot, stream_t *st)
{
    if (st->attention)
        return;
    st->attention = 1;
    attention[nattention++] = slot;
    if (notify_fd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(notify_fd, &one, sizeof one);
        (void)r;
    }
}

/* One received datagram: counters and analysis. Called with the lock held. */
static void account(int slot, stream_t *st, const uint8_t *buf, size_t len, double now)
{
    total_pkts++;
    st->npkts++;
    st->nbytes += len;
    st->last_rx = now;
    snapshot(&st->last, buf, len, now);
    st->has_last = 1;
    if (!st->analysis)
        return;
    if (st->armed && len >= 12) {
        u128 h = 0;
        for (int i = 0; i < 12; i++)
            h = (h << 8) | buf[i];
        if (h == st->expect) {
            /* RtpAnalyzer._settle_times, one packet */
            st->expect = h + st->step;
            st->run_n++;
            if (now - st->last_t > st->max_gap)
                st->max_gap = now - st->last_t;
            st->last_t = now;
            if (st->has_rec) {
                double rts = floor(now * st->clock);
                double d = (rts - st->prev_rts) - st->ts_step;
                if (d < 0)
                    d = -d;
                st->jlast += (d - st->jlast) / 16;
                if (st->jlast > st->jmax)
                    st->jmax = st->jlast;
                st->jtotal += st->jlast;
                st->prev_rts = rts;
            }
            return;
        }
    }
    /* Not predicted: Python decides. Later packets wait behind it. */
    st->armed = 0;
    total_queued++;
    snapshot(&st->queue[st->qlen++], buf, len, now);
    want_attention(slot, st);
    if (st->qlen == QUEUE_CAP) {
        total_paused++;
        st->paused = 1;
        epoll_ctl(epfd, EPOLL_CTL_DEL, st->in_fd, NULL);
    }
}

static uint8_t bufs[BATCH][RECV_SIZE];

static void relay_ready(int slot, stream_t *st)
{
    struct mmsghdr in[BATCH], out[2 * BATCH];
    struct iovec iov[BATCH];
    for (int round = 0; round < ROUNDS && !st->paused; round++) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = RECV_SIZE;
            memset(&in[i].msg_hdr, 0, sizeof in[i].msg_hdr);
            in[i].msg_hdr.msg_iov = &iov[i];
            in[i].msg_hdr.msg_iovlen = 1;
        }
        int room = BATCH;
        if (st->analysis && room > QUEUE_CAP - st->qlen)
            room = QUEUE_CAP - st->qlen;   /* every one might need a queue entry */
        int n = recvmmsg(st->in_fd, in, room, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                continue;   /* EINTR, or an ICMP error on the connected socket (now cleared) */
            return;
        }
        double now = monotonic();
        int nout = 0;
        for (int i = 0; i < n; i++) {
            size_t len = in[i].msg_len;
            account(slot, st, bufs[i], len, now);
            int copies = (st->dup && len < SMALL_PACKET) ? 2 : 1;
            for (int c = 0; c < copies; c++) {
                memset(&out[nout].msg_hdr, 0, sizeof out[nout].msg_hdr);
                if (st->tolen) {
                    out[nout].msg_hdr.msg_name = &st->to;
                    out[nout].msg_hdr.msg_namelen = st->tolen;
                }
                out[nout].msg_hdr.msg_iov = &iov[i];
                out[nout].msg_hdr.msg_iovlen = 1;
                iov[i].iov_len = len;
                nout++;
            }
        }
        int sent = 0;
        while (sent < nout) {
            int r = sendmmsg(st->out_fd, out + sent, nout - sent, MSG_DONTWAIT);
            if (r <= 0) {
                if (r < 0 && errno == EINTR)
                    continue;
                /* as the Python relay: a send that fails drops the packet */
                sent++;
                continue;
            }
            sent += r;
        }
        if (n < room)
            return;
    }
}

static void *run_thread(void *arg)
{
    (void)arg;
    struct epoll_event ev[EVENTS];
    /* Mildly disfavoured against the event loop's thread when both want the
     * CPU: a control command that wakes the loop runs before the next batch
     * of packets rather than after the scheduler's time slice. */
    struct sched_param none = {0};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &none);
    for (;;) {
        int n = epoll_wait(epfd, ev, EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        pthread_mutex_lock(&lock);
        total_wakeups++;
        int stop = !running;
        for (int i = 0; i < n && !stop; i++) {
            int slot = (int)ev[i].data.u32;
            if (slot < 0) {
                stop = 1;
                break;
            }
            if (slot < nstreams && streams[slot] != NULL && streams[slot]->used && !streams[slot]->paused)
                relay_ready(slot, streams[slot]);
        }
        pthread_mutex_unlock(&lock);
        if (stop)
            break;
    }
    return NULL;
}

static void lock_nogil(void)
{
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&lock);
    Py_END_ALLOW_THREADS
}

/* --- Python interface ------------------------------------------------------ */

static int u128_from(PyObject *obj, u128 *out)
{
    /* a non-negative int below 2**128 (callers pass -1 for "not armed") */
    uint8_t raw[16];
    PyObject *b = PyObject_CallMethod(obj, "to_bytes", "is", 16, "big");
    if (b == NULL)
        return -1;
    if (!PyBytes_Check(b) || PyBytes_GET_SIZE(b) != 16) {
        Py_DECREF(b);
        PyErr_SetString(PyExc_ValueError, "expected a 16-byte integer");
        return -1;
    }
    memcpy(raw, PyBytes_AS_STRING(b), 16);
    Py_DECREF(b);
    u128 v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 8) | raw[i];
    *out = v;
    return 0;
}

static PyObject *u128_to(u128 v)
{
    uint8_t raw[16];
    for (int i = 15; i >= 0; i--) {
        raw[i] = (uint8_t)v;
        v >>= 8;
    }
    return PyObject_CallMethod((PyObject *)&PyLong_Type, "from_bytes", "y#s", (const char *)raw,
                               (Py_ssize_t)16, "big");
}

static PyObject *snap_to(const snap_t *s)
{
    /* (prefix bytes, length, last byte, arrival time) */
    size_t n = s->len < SNAP_PREFIX ? s->len : SNAP_PREFIX;
    return Py_BuildValue("(y#IId)", (const char *)s->data, (Py_ssize_t)n, (unsigned)s->len,
                         (unsigned)s->last, s->t);
}

static int grow(int want)
{
    if (want <= nstreams)
        return 0;
    int size = nstreams ? nstreams : 64;
    while (size < want)
        size *= 2;
    stream_t **ns = realloc(streams, sizeof *ns * size);
    if (ns == NULL)
        return -1;
    int *na = realloc(attention, sizeof *na * size);
    if (na == NULL) {
        streams = ns;
        return -1;
    }
    for (int i = nstreams; i < size; i++)
        ns[i] = NULL;
    streams = ns;
    attention = na;
    nstreams = size;
    return 0;
}

static PyObject *fp_start(PyObject *self, PyObject *args)
{
    (void)self; (void)args;
    if (running)
        return PyLong_FromLong(notify_fd);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd < 0 || notify_fd < 0 || stop_fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)-1};
    epoll_ctl(epfd, EPOLL_CTL_ADD, stop_fd, &ev);
    running = 1;
    int err = pthread_create(&thread, NULL, run_thread, NULL);
    if (err) {
        running = 0;
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(notify_fd);
}

static PyObject *fp_stop(PyObject *self, PyObject *args)
{
    (void)self; (void)args;
    if (!running)
        Py_RETURN_NONE;
    lock_nogil();
    running = 0;
    pthread_mutex_unlock(&lock);
    uint64_t one = 1;
    ssize_t r = write(stop_fd, &one, sizeof one);
    (void)r;
    Py_BEGIN_ALLOW_THREADS
    pthread_join(thread, NULL);
    Py_END_ALLOW_THREADS
    close(epfd);
    close(notify_fd);
    close(stop_fd);
    epfd = notify_fd = stop_fd = -1;
    Py_RETURN_NONE;
}

/* add(in_fd, out_fd, dup, analysis, sockaddr) -> slot. sockaddr: the packed
 * address out_fd sends to, or b"" when out_fd is connected. in_fd < 0: a
 * stream fed by feed() only (tests, fuzzing). */
static PyObject *fp_add(PyObject *self, PyObject *args)
{
    (void)self;
    int in_fd, out_fd, dup, analysis;
    const char *to = NULL;
    Py_ssize_t tolen = 0;
    if (!PyArg_ParseTuple(args, "iipp|y#", &in_fd, &out_fd, &dup, &analysis, &to, &tolen))
        return NULL;
    if (tolen < 0 || (size_t)tolen > sizeof(struct sockaddr_storage)) {
        PyErr_SetString(PyExc_ValueError, "sockaddr too long");
        return NULL;
    }
    stream_t *st = calloc(1, sizeof *st);
    if (st == NULL)
        return PyErr_NoMemory();
    if (tolen > 0)
        memcpy(&st->to, to, (size_t)tolen);
    st->tolen = (socklen_t)tolen;
    st->used = 1;
    st->in_fd = in_fd;
    st->out_fd = out_fd;
    st->dup = dup;
    st->analysis = analysis;
    st->last_rx = -1;
    lock_nogil();
    int slot = -1;
    for (int i = 0; i < nstreams; i++)
        if (streams[i] == NULL) {
            slot = i;
            break;
        }
    if (slot < 0) {
        slot = nstreams;
        if (grow(nstreams + 1) < 0) {
            pthread_mutex_unlock(&lock);
            free(st);
            return PyErr_NoMemory();
        }
    }
    streams[slot] = st;
    if (in_fd >= 0 && epfd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, in_fd, &ev) < 0) {
            int e = errno;
            streams[slot] = NULL;
            pthread_mutex_unlock(&lock);
            free(st);
            errno = e;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
    }
    pthread_mutex_unlock(&lock);
    return PyLong_FromLong(slot);
}

static stream_t *get(int slot)
{
    if (slot < 0 || slot >= nstreams || streams[slot] == NULL) {
        PyErr_SetString(PyExc_KeyError, "no such fast path stream");
        return NULL;
    }
    return streams[slot];
}

/* The state read() returns (the lock is held): counters since the last
 * read, the newest packet, the run of predicted packets, the queue. */
static PyObject *take(stream_t *st)
{
    PyObject *queue = PyList_New(st->qlen);
    if (queue == NULL)
        return NULL;
    for (int i = 0; i < st->qlen; i++) {
        PyObject *item = snap_to(&st->queue[i]);
        if (item == NULL) {
            Py_DECREF(queue);
            return NULL;
        }
        PyList_SET_ITEM(queue, i, item);
    }
    PyObject *last = st->has_last ? snap_to(&st->last) : (Py_INCREF(Py_None), Py_None);
    PyObject *expect = st->armed ? u128_to(st->expect) : PyLong_FromLong(-1);
    if (last == NULL || expect == NULL) {
        Py_XDECREF(last);
        Py_XDECREF(expect);
        Py_DECREF(queue);
        return NULL;
    }
    PyObject *rx = st->last_rx >= 0 ? PyFloat_FromDouble(st->last_rx) : (Py_INCREF(Py_None), Py_None);
    PyObject *out = Py_BuildValue("(KKNNKNddddddN)", (unsigned long long)st->npkts,
                                  (unsigned long long)st->nbytes, rx, last,
                                  (unsigned long long)st->run_n, expect, st->last_t, st->max_gap,
                                  st->prev_rts, st->jlast, st->jmax, st->jtotal, queue);
    if (out == NULL)
        return NULL;
    st->npkts = st->nbytes = 0;
    st->last_rx = -1;
    st->has_last = 0;
    st->run_n = 0;
    st->qlen = 0;
    return out;
}

/* read(slot) -> (npkts, nbytes, last_rx or None, newest packet or None,
 * predicted packets, expected header or -1, last_t, max_gap, prev_rts, jlast,
 * jmax, jtotal, [unexpected packets]); counts restart from zero. */
static PyObject *fp_read(PyObject *self, PyObject *args)
{
    (void)self;
    int slot;
    if (!PyArg_ParseTuple(args, "i", &slot))
        return NULL;
    lock_nogil();
    stream_t *st = get(slot);
    PyObject *out = st ? take(st) : NULL;
    pthread_mutex_unlock(&lock);
    return out;
}

/* arm(slot, expect, step, ts_step, last_t, max_gap, clock, prev_rts, jlast,
 * jmax, jtotal): Python predicted the next header (the analyzer's run).
 * Refused (False) when unexpected packets came meanwhile: drain those first.
 * With expect -1 nothing is predicted: every packet goes to Python. */
static PyObject *fp_arm(PyObject *self, PyObject *args)
{
    (void)self;
    int slot, has_rec;
    PyObject *expect_obj, *step_obj;
    double ts_step, last_t, max_gap, clock, prev_rts, jlast, jmax, jtotal;
    if (!PyArg_ParseTuple(args, "iOOdddpddddd", &slot, &expect_obj, &step_obj, &ts_step,
                          &last_t, &max_gap, &has_rec, &clock, &prev_rts, &jlast, &jmax, &jtotal))
        return NULL;
    u128 expect = 0, step = 0;
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL)
        return NULL;
    int armed = PyObject_RichCompareBool(expect_obj, zero, Py_GE);
    Py_DECREF(zero);
    if (armed < 0)
        return NULL;
    if (armed && (u128_from(expect_obj, &expect) < 0 || u128_from(step_obj, &step) < 0))
        return NULL;
    lock_nogil();
    stream_t *st = get(slot);
    if (st == NULL) {
        pthread_mutex_unlock(&lock);
        return NULL;
    }
    int ok = st->qlen == 0;
    if (ok) {
        st->armed = armed;
        st->expect = expect;
        st->step = step;
        st->ts_step = ts_step;
        st->last_t = last_t;
        st->max_gap = max_gap;
        st->has_rec = has_rec;
        st->clock = clock;
        st->prev_rts = prev_rts;
        st->jlast = jlast;
        st->jmax = jmax;
        st->jtotal = jtotal;
        if (st->paused) {
            st->paused = 0;
            if (st->in_fd >= 0 && epfd >= 0) {
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)slot};
                epoll_ctl(epfd, EPOLL_CTL_ADD, st->in_fd, &ev);
            }
        }
    }
    pthread_mutex_unlock(&lock);
    return PyBool_FromLong(ok);
}

/* remove(slot) -> the last read(): the thread no longer touches its sockets. */
static PyObject *fp_remove(PyObject *self, PyObject *args)
{
    (void)self;
    int slot;
    if (!PyArg_ParseTuple(args, "i", &slot))
        return NULL;
    lock_nogil();
    stream_t *st = get(slot);
    if (st == NULL) {
        pthread_mutex_unlock(&lock);
        return NULL;
    }
    if (st->in_fd >= 0 && epfd >= 0 && !st->paused)
        epoll_ctl(epfd, EPOLL_CTL_DEL, st->in_fd, NULL);
    PyObject *out = take(st);
    streams[slot] = NULL;
    for (int i = 0; i < nattention; i++)
        if (attention[i] == slot) {
            attention[i] = attention[--nattention];
            break;
        }
    pthread_mutex_unlock(&lock);
    free(st);
    return out;
}

/* attention() -> the slots with unexpected packets queued since the last call. */
static PyObject *fp_attention(PyObject *self, PyObject *args)
{
    (void)self; (void)args;
    uint64_t count;
    if (notify_fd >= 0) {
        ssize_t r = read(notify_fd, &count, sizeof count);
        (void)r;
    }
    lock_nogil();
    PyObject *out = PyList_New(nattention);
    for (int i = 0; out != NULL && i < nattention; i++) {
        PyList_SET_ITEM(out, i, PyLong_FromLong(attention[i]));
        if (streams[attention[i]] != NULL)
            streams[attention[i]]->attention = 0;
    }
    if (out != NULL)
        nattention = 0;
    pthread_mutex_unlock(&lock);
    return out;
}

/* feed(slot, data, t): the per-packet code on one datagram, without sockets
 * (tests and the fuzz target). */
static PyObject *fp_feed(PyObject *self, PyObject *args)
{
    (void)self;
    int slot;
    Py_buffer data;
    double t;
    if (!PyArg_ParseTuple(args, "iy*d", &slot, &data, &t))
        return NULL;
    /* a copy of exactly the datagram's size, so that AddressSanitizer sees a
     * read one byte past it (a bytes object has a NUL there) */
    uint8_t *copy = malloc(data.len ? (size_t)data.len : 1);
    if (copy == NULL) {
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    memcpy(copy, data.buf, (size_t)data.len);
    lock_nogil();
    stream_t *st = get(slot);
    int ok = st != NULL;
    if (ok && st->qlen < QUEUE_CAP)
        account(slot, st, copy, (size_t)data.len, t);
    else if (ok)
        ok = -1;
    pthread_mutex_unlock(&lock);
    free(copy);
    PyBuffer_Release(&data);
    if (!ok)
        return NULL;
    return PyBool_FromLong(ok > 0);
}

/* stats() -> (packets, queued for Python, pauses, thread wake-ups) since start */
static PyObject *fp_stats(PyObject *self, PyObject *args)
{
    (void)self; (void)args;
    lock_nogil();
    PyObject *out = Py_BuildValue("(KKKK)", (unsigned long long)total_pkts,
                                  (unsigned long long)total_queued, (unsigned long long)total_paused,
                                  (unsigned long long)total_wakeups);
    pthread_mutex_unlock(&lock);
    return out;
}

static PyMethodDef methods[] = {
    {"stats", fp_stats, METH_NOARGS, "(packets, queued for Python, pauses, wake-ups) since start"},
    {"start", fp_start, METH_NOARGS, "Start the relaying thread; returns the descriptor that becomes readable when attention() has slots."},
    {"stop", fp_stop, METH_NOARGS, "Stop the relaying thread."},
    {"add", fp_add, METH_VARARGS, "add(in_fd, out_fd, dup, analysis, sockaddr=b'') -> slot"},
    {"read", fp_read, METH_VARARGS, "read(slot) -> state since the last read"},
    {"arm", fp_arm, METH_VARARGS, "arm(slot, expect, step, ts_step, last_t, max_gap, has_rec, clock, prev_rts, jlast, jmax, jtotal) -> bool"},
    {"remove", fp_remove, METH_VARARGS, "remove(slot) -> the final state"},
    {"attention", fp_attention, METH_NOARGS, "Slots with unexpected packets queued."},
    {"feed", fp_feed, METH_VARARGS, "feed(slot, data, t) -> False when the queue is full"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath", "Compiled relay of latched RTP streams (fastpath.py).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyModule_AddIntConstant(m, "SNAP_PREFIX", SNAP_PREFIX);
    PyModule_AddIntConstant(m, "QUEUE_CAP", QUEUE_CAP);
    return m;
}
