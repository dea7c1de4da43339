/* filmorph._native: the arms' hot loops in C, with the same random streams as Python.
 *
 * - Rng: a Mersenne Twister (MT19937) seeded the way CPython's random.Random(n) seeds
 *   itself from a non-negative integer n given here as its little-endian bytes (the
 *   key is n's 32-bit words up to its highest non-zero one, then init_by_array), and whose
 *   random() is random.Random.random() (53 bits from two 32-bit outputs). The same seed
 *   gives the same float stream, so an arm draws the same numbers whichever it is handed.
 * - Table: a view of an ExpansionTable's CSR arrays (int64 offsets, lefts, rights).
 * - expand(): StochasTok's expansion loop (filmorph.arms.stochastok.expand_slots) draw for
 *   draw, on an Rng.
 *
 * The pure-Python code in filmorph.arms is the reference; tests check both give the same
 * ids, counters and stream position. Built by setup.py as an optional extension: without a
 * compiler the package falls back to Python, with the same output, slower.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MT_N 624
#define MT_M 397

typedef struct {
    PyObject_HEAD
    int index;
    uint32_t state[MT_N];
} RngObject;

static uint32_t
mt_next(RngObject *r)
{
    uint32_t y;
    uint32_t *mt = r->state;
    if (r->index >= MT_N) {
        int k;
        for (k = 0; k < MT_N - MT_M; k++) {
            y = (mt[k] & 0x80000000U) | (mt[k + 1] & 0x7fffffffU);
            mt[k] = mt[k + MT_M] ^ (y >> 1) ^ ((y & 1U) ? 0x9908b0dfU : 0U);
        }
        for (; k < MT_N - 1; k++) {
            y = (mt[k] & 0x80000000U) | (mt[k + 1] & 0x7fffffffU);
            mt[k] = mt[k + (MT_M - MT_N)] ^ (y >> 1) ^ ((y & 1U) ? 0x9908b0dfU : 0U);
        }
        y = (mt[MT_N - 1] & 0x80000000U) | (mt[0] & 0x7fffffffU);
        mt[MT_N - 1] = mt[MT_M - 1] ^ (y >> 1) ^ ((y & 1U) ? 0x9908b0dfU : 0U);
        r->index = 0;
    }
    y = mt[r->index++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= y >> 18;
    return y;
}

static inline double
mt_random(RngObject *r)
{
    uint32_t a = mt_next(r) >> 5, b = mt_next(r) >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

/* init_genrand(19650218), where every init_by_array starts: computed once at import */
static uint32_t mt_base[MT_N];

static void
mt_base_init(void)
{
    mt_base[0] = 19650218U;
    for (size_t i = 1; i < MT_N; i++)
        mt_base[i] = 1812433253U * (mt_base[i - 1] ^ (mt_base[i - 1] >> 30)) + (uint32_t)i;
}

static void
mt_seed_words(RngObject *r, const uint32_t *key, size_t len)
{
    uint32_t *mt = r->state;
    size_t i, j, k;
    memcpy(mt, mt_base, sizeof(mt_base));
    i = 1;
    j = 0;
    for (k = (MT_N > len ? MT_N : len); k; k--) {
        mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1664525U)) + key[j] + (uint32_t)j;
        i++;
        j++;
        if (i >= MT_N) {
            mt[0] = mt[MT_N - 1];
            i = 1;
        }
        if (j >= len)
            j = 0;
    }
    for (k = MT_N - 1; k; k--) {
        mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >> 30)) * 1566083941U)) - (uint32_t)i;
        i++;
        if (i >= MT_N) {
            mt[0] = mt[MT_N - 1];
            i = 1;
        }
    }
    mt[0] = 0x80000000U;
    r->index = MT_N;
}

static int
Rng_init(RngObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"seed", NULL};
    Py_buffer buf;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*:Rng", kwlist, &buf))
        return -1;
    const unsigned char *p = (const unsigned char *)buf.buf;
    size_t nbytes = (size_t)buf.len;
    size_t nwords = (nbytes + 3) / 4;
    uint32_t small[16];
    uint32_t *key = nwords <= 16 ? small : PyMem_Malloc(nwords * sizeof(uint32_t));
    if (key == NULL) {
        PyBuffer_Release(&buf);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t w = 0; w < nwords; w++) {
        uint32_t v = 0;
        for (size_t b = 0; b < 4 && 4 * w + b < nbytes; b++)
            v |= (uint32_t)p[4 * w + b] << (8 * b);
        key[w] = v;
    }
    size_t used = nwords;
    while (used > 1 && key[used - 1] == 0)
        used--;
    if (used == 0) {  /* empty bytes: the integer 0 */
        key[0] = 0;
        used = 1;
    }
    mt_seed_words(self, key, used);
    if (key != small)
        PyMem_Free(key);
    PyBuffer_Release(&buf);
    return 0;
}

static PyObject *
Rng_random(RngObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(mt_random(self));
}

static PyMethodDef Rng_methods[] = {
    {"random", (PyCFunction)Rng_random, METH_NOARGS,
     "random() -> float in [0, 1): the next number of random.Random.random()'s stream."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RngType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "filmorph._native.Rng",
    .tp_basicsize = sizeof(RngObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Rng(seed_bytes): random.Random(int.from_bytes(seed_bytes, 'little'))'s "
              "random() stream.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Rng_init,
    .tp_methods = Rng_methods,
};

/* ------------------------------------------------------------------ counters */

/* The arms' counter names, interned at import (the order of enum CounterKey). */
enum CounterKey {
    K_EXPAND_ATTEMPTS, K_EXPANSIONS,
    K_WINDOWS, K_WINDOWS_CONTRACTED, K_AFFIX_CUTS, K_REDUP_CUTS, K_WINDOWS_KEPT,
    K_WINDOWS_FIRST_K, K_WINDOWS_DROPPED_SPECIAL,
    K_WORDS_ANALYSED, K_WORDS_CUT, K_WORDS_KEPT, K_MORPH_CUTS,
    K_CONTRACT_ATTEMPTS, K_WINDOWS_BLOCKED, K_WINDOWS_SKIPPED_AFFIX, K_WINDOWS_TO_ONE_TOKEN,
    K_WINDOWS_CUT, K_WINDOWS_FALLBACK, K_SPLIT_PREFIX, K_SPLIT_INFIX, K_SPLIT_SUFFIX,
    K_SPLIT_REDUP, K_COUNT
};
static const char *counter_names[K_COUNT] = {
    "expand_attempts", "expansions",
    "windows", "windows_contracted", "affix_cuts", "redup_cuts", "windows_kept",
    "windows_first_k", "windows_dropped_special",
    "words_analysed", "words_cut", "words_kept", "morph_cuts",
    "contract_attempts", "windows_blocked", "windows_skipped_affix", "windows_to_one_token",
    "windows_cut", "windows_fallback", "split_prefix", "split_infix", "split_suffix",
    "split_redup",
};
static PyObject *counter_keys[K_COUNT];

/* counters[key] += v on a dict (a collections.Counter); None: nothing. 0 or -1. */
static int
counter_add(PyObject *counters, enum CounterKey key, Py_ssize_t v)
{
    if (counters == Py_None)
        return 0;
    PyObject *k = counter_keys[key];
    PyObject *old = PyDict_GetItemWithError(counters, k);
    if (old == NULL && PyErr_Occurred())
        return -1;
    PyObject *nv;
    if (old == NULL) {
        nv = PyLong_FromSsize_t(v);
    }
    else {
        PyObject *d = PyLong_FromSsize_t(v);
        nv = d == NULL ? NULL : PyNumber_Add(old, d);
        Py_XDECREF(d);
    }
    if (nv == NULL)
        return -1;
    int rc = PyDict_SetItem(counters, k, nv);
    Py_DECREF(nv);
    return rc;
}

static int
check_counters(PyObject *counters)
{
    if (counters != Py_None && !PyDict_Check(counters)) {
        PyErr_SetString(PyExc_TypeError, "counters must be a dict (a Counter) or None");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ Table */

typedef struct {
    PyObject_HEAD
    int32_t *off;   /* vocab + 1 offsets into the pairs */
    int32_t *pairs; /* (left, right) interleaved: one cache line holds both */
    PyObject **ints; /* one int object per token id, made on first use: output lists share them */
    int held;
    Py_ssize_t vocab;
} TableObject;

/* A new reference to the int object of token id `t` (0 <= t < vocab). */
static inline PyObject *
table_int(TableObject *table, int64_t t)
{
    PyObject *o = table->ints[t];
    if (o == NULL) {
        o = PyLong_FromLongLong(t);
        if (o == NULL)
            return NULL;
        table->ints[t] = o;
    }
    Py_INCREF(o);
    return o;
}

static int
get_int64_buffer(PyObject *obj, Py_buffer *view, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->itemsize != 8 || view->format == NULL ||
        (strcmp(view->format, "q") != 0 && strcmp(view->format, "l") != 0 &&
         strcmp(view->format, "<q") != 0 && strcmp(view->format, "<l") != 0 &&
         strcmp(view->format, "=q") != 0)) {
        PyErr_Format(PyExc_TypeError, "Table: %s must be a buffer of int64", what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Table(offsets, lefts, rights): a copy of an ExpansionTable's CSR arrays as int32. */
static int
Table_init(TableObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"offsets", "lefts", "rights", NULL};
    PyObject *o, *l, *r;
    Py_buffer bo, bl, br;
    int rc = -1;
    if (self->held) {
        PyErr_SetString(PyExc_TypeError, "Table is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:Table", kwlist, &o, &l, &r))
        return -1;
    if (get_int64_buffer(o, &bo, "offsets") < 0)
        return -1;
    if (get_int64_buffer(l, &bl, "lefts") < 0) {
        PyBuffer_Release(&bo);
        return -1;
    }
    if (get_int64_buffer(r, &br, "rights") < 0) {
        PyBuffer_Release(&bo);
        PyBuffer_Release(&bl);
        return -1;
    }
    Py_ssize_t n_off = bo.len / 8, n_pairs = bl.len / 8;
    const int64_t *off = (const int64_t *)bo.buf;
    const int64_t *lefts = (const int64_t *)bl.buf, *rights = (const int64_t *)br.buf;
    if (n_off < 1 || br.len != bl.len || off[0] != 0 || off[n_off - 1] != n_pairs ||
        n_pairs > INT32_MAX || n_off - 1 > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "Table: offsets do not describe lefts/rights");
        goto out;
    }
    self->off = PyMem_Malloc((size_t)n_off * sizeof(int32_t));
    self->pairs = PyMem_Malloc((size_t)(2 * n_pairs + 1) * sizeof(int32_t));
    self->ints = PyMem_Calloc((size_t)n_off, sizeof(PyObject *));
    if (self->off == NULL || self->pairs == NULL || self->ints == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t i = 0; i < n_off; i++) {
        if (i && off[i] < off[i - 1]) {
            PyErr_SetString(PyExc_ValueError, "Table: offsets decrease");
            goto out;
        }
        self->off[i] = (int32_t)off[i];
    }
    for (Py_ssize_t m = 0; m < n_pairs; m++) {
        if (lefts[m] < 0 || lefts[m] >= n_off - 1 || rights[m] < 0 || rights[m] >= n_off - 1) {
            PyErr_SetString(PyExc_ValueError, "Table: a pair id outside the vocabulary");
            goto out;
        }
        self->pairs[2 * m] = (int32_t)lefts[m];
        self->pairs[2 * m + 1] = (int32_t)rights[m];
    }
    self->vocab = n_off - 1;
    self->held = 1;
    rc = 0;
out:
    PyBuffer_Release(&bo);
    PyBuffer_Release(&bl);
    PyBuffer_Release(&br);
    return rc;
}

static void
Table_dealloc(TableObject *self)
{
    if (self->ints != NULL) {
        for (Py_ssize_t i = 0; i <= self->vocab; i++)
            Py_XDECREF(self->ints[i]);
        PyMem_Free(self->ints);
    }
    PyMem_Free(self->off);
    PyMem_Free(self->pairs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "filmorph._native.Table",
    .tp_basicsize = sizeof(TableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Table(offsets, lefts, rights): an expansion table's CSR arrays (int64 buffers), "
              "copied as int32.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Table_init,
    .tp_dealloc = (destructor)Table_dealloc,
};

/* ------------------------------------------------------------------ expand */

/* The pieces of one expanded position, in expansion order of slots. */
typedef struct {
    Py_ssize_t pos;
    Py_ssize_t len, cap;
    int64_t *ids; /* `inl` until a slot outgrows it (rare), then the heap */
    int64_t inl[6];
} Slot;

static int
slot_reserve(Slot *s, Py_ssize_t need)
{
    if (s->ids == NULL) {
        s->ids = s->inl;
        s->cap = 6;
    }
    if (need <= s->cap)
        return 0;
    Py_ssize_t cap = s->cap * 2;
    while (cap < need)
        cap *= 2;
    int64_t *p;
    if (s->ids == s->inl) {
        p = PyMem_Malloc((size_t)cap * sizeof(int64_t));
        if (p != NULL)
            memcpy(p, s->inl, sizeof(s->inl));
    }
    else {
        p = PyMem_Realloc(s->ids, (size_t)cap * sizeof(int64_t));
    }
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->ids = p;
    s->cap = cap;
    return 0;
}

/* Read a sequence of token ids into a new int64 array, each checked against [0, vocab). */
static int64_t *
read_ids(PyObject *seq, Py_ssize_t vocab)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    int64_t *v = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (v == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long long x = PyLong_AsLongLong(items[i]);
        if (x == -1 && PyErr_Occurred()) {
            PyMem_Free(v);
            return NULL;
        }
        if (x < 0 || x >= vocab) {
            PyErr_Format(PyExc_IndexError, "token id %lld outside the vocabulary (%zd)", x,
                         vocab);
            PyMem_Free(v);
            return NULL;
        }
        v[i] = (int64_t)x;
    }
    return v;
}

/* One expansion run: the slots expanded (in expansion order) and where each position went. */
typedef struct {
    Slot *slots;
    Py_ssize_t *slot_of; /* position -> slot index or -1 */
    Py_ssize_t nslots, attempts, done;
} Expansion;

/* Add a run's expansion counters (when it attempted any, as the Python arms do): 0 or -1. */
static int
expansion_counters(PyObject *counters, const Expansion *x)
{
    if (x->attempts == 0)
        return 0;
    return counter_add(counters, K_EXPAND_ATTEMPTS, x->attempts) < 0 ||
                   counter_add(counters, K_EXPANSIONS, x->done) < 0
               ? -1
               : 0;
}

static void
expansion_free(Expansion *x)
{
    if (x->slots != NULL) {
        for (Py_ssize_t i = 0; i < x->nslots; i++)
            if (x->slots[i].ids != x->slots[i].inl)
                PyMem_Free(x->slots[i].ids);
        PyMem_Free(x->slots);
    }
    PyMem_Free(x->slot_of);
    x->slots = NULL;
    x->slot_of = NULL;
}

/* StochasTok on ids[0:n0] (ids in [0, table->vocab), blocked covering the vocabulary or
 * NULL): draw for draw filmorph.arms.stochastok.expand_slots. 0, or -1 with an error set. */
static int
expand_core(const int64_t *ids, Py_ssize_t n0, const TableObject *table, RngObject *rng,
            double prop, const unsigned char *blocked, Py_ssize_t redraw, Expansion *x)
{
    memset(x, 0, sizeof(*x));
    Py_ssize_t attempts = (Py_ssize_t)(prop * (double)n0);
    if (attempts <= 0)
        return 0;
    x->attempts = attempts;
    x->slots = PyMem_Calloc((size_t)attempts, sizeof(Slot));
    x->slot_of = PyMem_Malloc((size_t)n0 * sizeof(Py_ssize_t));
    if (x->slots == NULL || x->slot_of == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n0; i++)
        x->slot_of[i] = -1;
    const int32_t *off = table->off, *pairs = table->pairs;
    Slot *slots = x->slots;
    Py_ssize_t pieces_in_expanded = 0, maxc = 2, done = 0;
    for (Py_ssize_t at = 0; at < attempts; at++) {
        Slot *sl = NULL;
        Py_ssize_t s = 0, c = 0, j = 0;
        int64_t tid = 0;
        int ok = 0;
        for (Py_ssize_t draw = 0; draw <= redraw; draw++) {
            if (pieces_in_expanded &&
                mt_random(rng) * (double)(n0 + done) < (double)pieces_in_expanded) {
                for (;;) {
                    sl = &slots[(Py_ssize_t)(mt_random(rng) * (double)x->nslots)];
                    c = sl->len;
                    if (c == maxc || mt_random(rng) * (double)maxc < (double)c)
                        break;
                }
                j = (Py_ssize_t)(mt_random(rng) * (double)c);
                tid = sl->ids[j];
            }
            else {
                s = (Py_ssize_t)(mt_random(rng) * (double)n0);
                while (x->slot_of[s] >= 0)
                    s = (Py_ssize_t)(mt_random(rng) * (double)n0);
                sl = NULL;
                tid = ids[s];
            }
            if (blocked == NULL || !blocked[tid]) {
                ok = 1;
                break;
            }
        }
        if (!ok)
            continue;
        int64_t k = off[tid + 1] - off[tid];
        if (!k)
            continue;
        int64_t m = off[tid] + (int64_t)(mt_random(rng) * (double)k);
        if (sl == NULL) {
            sl = &slots[x->nslots++];
            sl->pos = s;
            if (slot_reserve(sl, 2) < 0)
                return -1;
            sl->ids[0] = pairs[2 * m];
            sl->ids[1] = pairs[2 * m + 1];
            sl->len = 2;
            x->slot_of[s] = x->nslots - 1;
            pieces_in_expanded += 2;
        }
        else {
            if (slot_reserve(sl, c + 1) < 0)
                return -1;
            memmove(sl->ids + j + 2, sl->ids + j + 1, (size_t)(c - j - 1) * sizeof(int64_t));
            sl->ids[j] = pairs[2 * m];
            sl->ids[j + 1] = pairs[2 * m + 1];
            sl->len = c + 1;
            pieces_in_expanded += 1;
            if (c + 1 > maxc)
                maxc = c + 1;
        }
        done++;
        x->done = done;
    }
    return 0;
}

/* The expanded sequence as a list; `items` (int objects equal to ids[i], or NULL, or NULL
 * entries) are reused for positions left as they were. */
static PyObject *
expansion_list(TableObject *table, const int64_t *ids, PyObject **items, Py_ssize_t n0,
               const Expansion *x)
{
    PyObject *result = PyList_New(n0 + x->done);
    if (result == NULL)
        return NULL;
    Py_ssize_t w = 0;
    for (Py_ssize_t i = 0; i < n0; i++) {
        Py_ssize_t si = x->slot_of != NULL ? x->slot_of[i] : -1;
        if (si < 0) {
            PyObject *v = items != NULL ? items[i] : NULL;
            if (v != NULL)
                Py_INCREF(v);
            else
                v = table_int(table, ids[i]);
            if (v == NULL)
                goto fail;
            PyList_SET_ITEM(result, w++, v);
        }
        else {
            for (Py_ssize_t q = 0; q < x->slots[si].len; q++) {
                PyObject *v = table_int(table, x->slots[si].ids[q]);
                if (v == NULL)
                    goto fail;  /* the unset tail is NULL: safe to DECREF */
                PyList_SET_ITEM(result, w++, v);
            }
        }
    }
    return result;
fail:
    Py_DECREF(result);
    return NULL;
}

/* {position: [pieces]} in expansion order */
static PyObject *
expansion_dict(const Expansion *x)
{
    PyObject *result = PyDict_New();
    if (result == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < x->nslots; i++) {
        PyObject *lst = PyList_New(x->slots[i].len);
        if (lst == NULL)
            goto fail;
        for (Py_ssize_t q = 0; q < x->slots[i].len; q++) {
            PyObject *v = PyLong_FromLongLong(x->slots[i].ids[q]);
            if (v == NULL) {
                Py_DECREF(lst);
                goto fail;
            }
            PyList_SET_ITEM(lst, q, v);
        }
        PyObject *key = PyLong_FromSsize_t(x->slots[i].pos);
        if (key == NULL || PyDict_SetItem(result, key, lst) < 0) {
            Py_XDECREF(key);
            Py_DECREF(lst);
            goto fail;
        }
        Py_DECREF(key);
        Py_DECREF(lst);
    }
    return result;
fail:
    Py_DECREF(result);
    return NULL;
}

/* A `blocked` argument: None, or a buffer covering the table's vocabulary. */
static int
get_blocked(PyObject *obj, Py_buffer *view, const TableObject *table)
{
    if (obj == Py_None)
        return 0;
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view->len < table->vocab) {
        PyErr_Format(PyExc_ValueError, "`blocked` covers %zd ids, the table %zd", view->len,
                     table->vocab);
        PyBuffer_Release(view);
        return -1;
    }
    return 1;
}

/* expand(ids, table, rng, expand_prop, blocked=None, redraw_blocked=0, slots=False,
 *        counters=None) -> list of new ids, or {position: [pieces]} when slots; adds
 * expand_attempts / expansions to counters when there were attempts */
static PyObject *
native_expand(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ids", "table", "rng", "expand_prop", "blocked",
                             "redraw_blocked", "slots", "counters", NULL};
    PyObject *ids_obj, *blocked_obj = Py_None, *result = NULL, *counters = Py_None;
    TableObject *table;
    RngObject *rng;
    double prop;
    Py_ssize_t redraw = 0;
    int want_slots = 0, have_bview;
    Py_buffer bview;
    Expansion x;
    memset(&x, 0, sizeof(x));
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O!d|OnpO:expand", kwlist, &ids_obj,
                                     &TableType, &table, &RngType, &rng, &prop, &blocked_obj,
                                     &redraw, &want_slots, &counters) ||
        check_counters(counters) < 0)
        return NULL;
    if (!table->held) {
        PyErr_SetString(PyExc_ValueError, "expand: the table is not initialised");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(ids_obj, "expand: ids must be a sequence");
    if (seq == NULL)
        return NULL;
    have_bview = get_blocked(blocked_obj, &bview, table);
    int64_t *ids = have_bview < 0 ? NULL : read_ids(seq, table->vocab);
    Py_ssize_t n0 = PySequence_Fast_GET_SIZE(seq);
    if (ids != NULL &&
        expand_core(ids, n0, table, rng, prop, have_bview > 0 ? bview.buf : NULL, redraw, &x) == 0)
        result = want_slots ? expansion_dict(&x)
                            : expansion_list(table, ids, PySequence_Fast_ITEMS(seq), n0, &x);
    expansion_free(&x);
    PyMem_Free(ids);
    if (have_bview > 0)
        PyBuffer_Release(&bview);
    Py_DECREF(seq);
    if (result == NULL)
        return NULL;
    if (expansion_counters(counters, &x) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

/* ------------------------------------------------------------------ published Patok */

/* A growable int64 sequence: the document being rewritten. */
typedef struct {
    int64_t *v;
    PyObject **objs; /* borrowed: the input's int object of a position it still holds, or NULL */
    Py_ssize_t n, cap;
} I64Vec;

static int
window_special(const I64Vec *a, Py_ssize_t st, Py_ssize_t k, const unsigned char *special,
               Py_ssize_t special_len)
{
    for (Py_ssize_t i = st; i < st + k; i++) {
        int64_t t = a->v[i];
        if (t >= special_len || special[t])
            return 1;  /* ids are checked on entry; the encoder's stay in the vocabulary */
    }
    return 0;
}

/* The published loop's memo: what it needs of a window's facts (affix token? overlapping
 * matches? text? number of choices) and of a window's outcome for choice j (new ids, affix
 * cut, reduplication cuts), kept in two open-addressing tables with the window's ids inline,
 * so that a lookup touches one or two cache lines instead of a tuple key, its int objects and
 * the info tuple. On a miss the facts come from PatokPublished._facts (the Python loop's own
 * code, without its dict) and an outcome from the window's outcomes dict or _outcome_of, so
 * both loops compute the same things. A table that reaches max_slots / 2 entries (default
 * 2**20 slots: at most about 150 MB for the two tables) is emptied (a memo: output
 * unchanged). */
#define OUT_INLINE 10

/* An outcome kept in its window's entry (choices -1 and 0, the common ones; up to 5 new ids,
 * 3 bytes each): the one cache line that holds the window holds what it becomes. */
#define INLINE_IDS 5
typedef struct {
    uint8_t known;
    int8_t n; /* -1: None (the window keeps its ids) */
    uint8_t cut, red;
    uint8_t ids[3 * INLINE_IDS]; /* little-endian 24-bit ids */
    uint8_t pad;
} InlineOut;

enum { W_USED = 1, W_AFFIX = 2, W_OVERLAP = 4, W_TEXTNONE = 8 };

typedef struct {
    int32_t key[4];
    uint8_t k, flags;
    uint16_t nchoices;
    uint32_t info;    /* index into MemoObject.infos */
    InlineOut inl[2]; /* choice -1 and choice 0 */
} WEntry;             /* one 64-byte cache line */

typedef struct {
    int32_t key[4];
    int32_t j;
    uint8_t k, used, isnone, cut;
    int32_t red;
    int32_t n;
    int32_t ids[OUT_INLINE];
    PyObject *tuple; /* strong: the new ids when there are more than OUT_INLINE */
} OEntry;

typedef struct {
    PyObject_HEAD
    WEntry *w;      /* 64-byte aligned, inside w_base */
    void *w_base;
    OEntry *o;
    PyObject **infos; /* strong: each memoised window's facts, handed back to outcome_fn */
    size_t wcap, wlen, ocap, olen, max_slots, ninfos;
    Py_ssize_t vocab;
} MemoObject;

_Static_assert(sizeof(WEntry) == 64, "a window's memo entry is one cache line");

/* A zeroed table of `cap` WEntry on a 64-byte boundary; *base gets what to free. */
static WEntry *
wtable_new(size_t cap, void **base)
{
    char *p = PyMem_Calloc(cap * sizeof(WEntry) + 64, 1);
    *base = p;
    if (p == NULL)
        return NULL;
    return (WEntry *)(void *)(p + (64 - ((uintptr_t)p & 63)) % 64);
}

static uint64_t
key_hash(const int32_t *key, int k, int32_t j)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL * (uint64_t)(k + 1) + (uint64_t)(uint32_t)j;
    for (int i = 0; i < k; i++) {
        h ^= (uint64_t)(uint32_t)key[i];
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
    }
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    return h;
}

static void
memo_clear_w(MemoObject *m)
{
    for (size_t i = 0; i < m->ninfos; i++)
        Py_CLEAR(m->infos[i]);
    m->ninfos = 0;
    memset(m->w, 0, m->wcap * sizeof(WEntry));
    m->wlen = 0;
}

static void
memo_clear_o(MemoObject *m)
{
    for (size_t i = 0; i < m->ocap; i++)
        if (m->o[i].used)
            Py_CLEAR(m->o[i].tuple);
    memset(m->o, 0, m->ocap * sizeof(OEntry));
    m->olen = 0;
}

static int
Memo_init(MemoObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"vocab", "max_slots", NULL};
    Py_ssize_t vocab, max_slots = 1 << 20;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|n:Memo", kwlist, &vocab, &max_slots))
        return -1;
    if (max_slots < 1024 || (max_slots & (max_slots - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "Memo: max_slots must be a power of two >= 1024");
        return -1;
    }
    if (vocab < 1 || vocab > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "Memo: vocab must be in [1, 2**31)");
        return -1;
    }
    if (self->w != NULL) {
        PyErr_SetString(PyExc_TypeError, "Memo is already initialised");
        return -1;
    }
    self->vocab = vocab;
    self->max_slots = (size_t)max_slots;
    if (vocab > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "Memo: vocab must be at most 2**24 (3-byte ids)");
        return -1;
    }
    self->wcap = self->ocap = 1024;
    self->w = wtable_new(self->wcap, &self->w_base);
    self->o = PyMem_Calloc(self->ocap, sizeof(OEntry));
    self->infos = PyMem_Malloc((self->max_slots / 2 + 1) * sizeof(PyObject *));
    if (self->w == NULL || self->o == NULL || self->infos == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
Memo_dealloc(MemoObject *self)
{
    if (self->w != NULL && self->infos != NULL)
        memo_clear_w(self);
    PyMem_Free(self->w_base);
    PyMem_Free(self->infos);
    if (self->o != NULL) {
        memo_clear_o(self);
        PyMem_Free(self->o);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Memo_sizes(MemoObject *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(nn)", (Py_ssize_t)self->wlen, (Py_ssize_t)self->olen);
}

static PyMethodDef Memo_methods[] = {
    {"sizes", (PyCFunction)Memo_sizes, METH_NOARGS,
     "sizes() -> (windows memoised, outcomes memoised)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MemoType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "filmorph._native.Memo",
    .tp_basicsize = sizeof(MemoObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memo(vocab, max_slots=2**20): the published Patok loop's window and outcome "
              "memo (a table is emptied at max_slots / 2 entries).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Memo_init,
    .tp_dealloc = (destructor)Memo_dealloc,
    .tp_methods = Memo_methods,
};

/* Move the used entries of an open-addressing table (linear probing, power-of-two sizes)
 * into a zeroed one of new_cap slots: the one rehash the memos' three entry kinds share. */
static void
table_rehash(const char *old, size_t old_cap, char *fresh, size_t new_cap, size_t size,
             int (*used)(const void *), uint64_t (*hash)(const void *))
{
    for (size_t i = 0; i < old_cap; i++) {
        const void *e = old + i * size;
        if (!used(e))
            continue;
        size_t h = (size_t)hash(e) & (new_cap - 1);
        while (used(fresh + h * size))
            h = (h + 1) & (new_cap - 1);
        memcpy(fresh + h * size, e, size);
    }
}

static int
w_used(const void *e)
{
    return ((const WEntry *)e)->flags & W_USED;
}

static uint64_t
w_hash(const void *e)
{
    return key_hash(((const WEntry *)e)->key, ((const WEntry *)e)->k, 0);
}

static int
o_used(const void *e)
{
    return ((const OEntry *)e)->used;
}

static uint64_t
o_hash(const void *e)
{
    return key_hash(((const OEntry *)e)->key, ((const OEntry *)e)->k, ((const OEntry *)e)->j);
}

/* Double a table (or empty it at max_slots); 0 or -1 with an error set. */
static int
memo_grow_w(MemoObject *m)
{
    if (m->wcap >= m->max_slots) {
        memo_clear_w(m);
        return 0;
    }
    size_t cap = m->wcap * 2;
    void *base;
    WEntry *t = wtable_new(cap, &base);
    if (t == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    table_rehash((const char *)m->w, m->wcap, (char *)t, cap, sizeof(WEntry), w_used, w_hash);
    PyMem_Free(m->w_base);
    m->w = t;
    m->w_base = base;
    m->wcap = cap;
    return 0;
}

static int
memo_grow_o(MemoObject *m)
{
    if (m->ocap >= m->max_slots) {
        memo_clear_o(m);
        return 0;
    }
    size_t cap = m->ocap * 2;
    OEntry *t = PyMem_Calloc(cap, sizeof(OEntry));
    if (t == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    table_rehash((const char *)m->o, m->ocap, (char *)t, cap, sizeof(OEntry), o_used, o_hash);
    PyMem_Free(m->o);
    m->o = t;
    m->ocap = cap;
    return 0;
}

/* The facts of window a[st:st+k] (k <= 4): from the memo, else through info_fn(tuple). The
 * pointer stays valid until the next window lookup. */
static WEntry *
memo_window(MemoObject *m, const I64Vec *a, Py_ssize_t st, Py_ssize_t k, PyObject *info_fn)
{
    int32_t key[4] = {0, 0, 0, 0};
    for (Py_ssize_t i = 0; i < k; i++)
        key[i] = (int32_t)a->v[st + i];
    uint64_t hv = key_hash(key, (int)k, 0);
    size_t h = (size_t)hv & (m->wcap - 1);
    while (m->w[h].flags & W_USED) {
        WEntry *e = &m->w[h];
        if (e->k == k && e->key[0] == key[0] && e->key[1] == key[1] && e->key[2] == key[2] &&
            e->key[3] == key[3])
            return e;
        h = (h + 1) & (m->wcap - 1);
    }
    PyObject *tkey = PyTuple_New(k);
    if (tkey == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *v = PyLong_FromLong(key[i]);
        if (v == NULL) {
            Py_DECREF(tkey);
            return NULL;
        }
        PyTuple_SET_ITEM(tkey, i, v);
    }
    PyObject *info = PyObject_CallOneArg(info_fn, tkey);
    Py_DECREF(tkey);
    if (info == NULL)
        return NULL;
    if (!PyTuple_Check(info) || PyTuple_GET_SIZE(info) != 5) {
        Py_DECREF(info);
        PyErr_SetString(PyExc_TypeError, "published_contract: info must be a 5-tuple");
        return NULL;
    }
    int affix = PyObject_IsTrue(PyTuple_GET_ITEM(info, 4));
    int overlap = PyObject_IsTrue(PyTuple_GET_ITEM(info, 1));
    Py_ssize_t nchoices = PyObject_Length(PyTuple_GET_ITEM(info, 2));
    if (affix < 0 || overlap < 0 || nchoices < 0 || nchoices > UINT16_MAX ||
        !PyDict_Check(PyTuple_GET_ITEM(info, 3))) {
        Py_DECREF(info);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "published_contract: bad window info");
        return NULL;
    }
    if (2 * (m->wlen + 1) > m->wcap) {
        if (memo_grow_w(m) < 0) {
            Py_DECREF(info);
            return NULL;
        }
        h = (size_t)hv & (m->wcap - 1);
        while (m->w[h].flags & W_USED)
            h = (h + 1) & (m->wcap - 1);
    }
    WEntry *e = &m->w[h];
    memset(e, 0, sizeof(*e));
    memcpy(e->key, key, sizeof(key));
    e->k = (uint8_t)k;
    e->flags = W_USED | (affix ? W_AFFIX : 0) | (overlap ? W_OVERLAP : 0) |
               (PyTuple_GET_ITEM(info, 0) == Py_None ? W_TEXTNONE : 0);
    e->nchoices = (uint16_t)nchoices;
    e->info = (uint32_t)m->ninfos;
    m->infos[m->ninfos++] = info; /* wlen <= max_slots / 2: room is there */
    m->wlen++;
    return e;
}

/* The outcome of choice j for window w: from the memo, else the window's outcomes dict, else
 * outcome_fn(info, j). */
static OEntry *
memo_outcome(MemoObject *m, const WEntry *w, int32_t j, PyObject *outcome_fn)
{
    uint64_t hv = key_hash(w->key, w->k, j);
    size_t h = (size_t)hv & (m->ocap - 1);
    while (m->o[h].used) {
        OEntry *e = &m->o[h];
        if (e->k == w->k && e->j == j && e->key[0] == w->key[0] && e->key[1] == w->key[1] &&
            e->key[2] == w->key[2] && e->key[3] == w->key[3])
            return e;
        h = (h + 1) & (m->ocap - 1);
    }
    PyObject *jkey = PyLong_FromLong(j);
    if (jkey == NULL)
        return NULL;
    PyObject *info = m->infos[w->info];
    PyObject *res = PyDict_GetItemWithError(PyTuple_GET_ITEM(info, 3), jkey);
    if (res != NULL)
        Py_INCREF(res);
    else if (!PyErr_Occurred())
        res = PyObject_CallFunctionObjArgs(outcome_fn, info, jkey, NULL);
    Py_DECREF(jkey);
    if (res == NULL)
        return NULL;
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 3) {
        Py_DECREF(res);
        PyErr_SetString(PyExc_TypeError, "published_contract: an outcome is a 3-tuple");
        return NULL;
    }
    PyObject *new_ids = PyTuple_GET_ITEM(res, 0);
    int cut = PyObject_IsTrue(PyTuple_GET_ITEM(res, 1));
    long red = PyLong_AsLong(PyTuple_GET_ITEM(res, 2));
    if (cut < 0 || (red == -1 && PyErr_Occurred()) || (new_ids != Py_None && !PyTuple_Check(new_ids))) {
        Py_DECREF(res);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "published_contract: new ids must be a tuple");
        return NULL;
    }
    OEntry tmp;
    memset(&tmp, 0, sizeof(tmp));
    memcpy(tmp.key, w->key, sizeof(tmp.key));
    tmp.k = w->k;
    tmp.j = j;
    tmp.used = 1;
    tmp.cut = (uint8_t)cut;
    tmp.red = (int32_t)red;
    tmp.isnone = new_ids == Py_None;
    if (!tmp.isnone) {
        Py_ssize_t n = PyTuple_GET_SIZE(new_ids);
        tmp.n = (int32_t)n;
        if (n > OUT_INLINE) {
            Py_INCREF(new_ids);
            tmp.tuple = new_ids;
        }
        else {
            for (Py_ssize_t i = 0; i < n; i++) {
                long x = PyLong_AsLong(PyTuple_GET_ITEM(new_ids, i));
                if ((x == -1 && PyErr_Occurred()) || x < 0 || x >= m->vocab) {
                    Py_DECREF(res);
                    if (!PyErr_Occurred())
                        PyErr_SetString(PyExc_IndexError, "published_contract: a new id "
                                        "outside the vocabulary");
                    return NULL;
                }
                tmp.ids[i] = (int32_t)x;
            }
        }
    }
    Py_DECREF(res);
    if (2 * (m->olen + 1) > m->ocap) {
        if (memo_grow_o(m) < 0) {
            Py_XDECREF(tmp.tuple);
            return NULL;
        }
        h = (size_t)hv & (m->ocap - 1);
        while (m->o[h].used)
            h = (h + 1) & (m->ocap - 1);
    }
    m->o[h] = tmp;
    m->olen++;
    return &m->o[h];
}

static int
vec_splice_outcome(I64Vec *a, Py_ssize_t st, Py_ssize_t k, Py_ssize_t m, const int32_t *ids,
                   PyObject *tuple, Py_ssize_t vocab)
{
    Py_ssize_t n = a->n + m - k;
    if (n > a->cap) {
        Py_ssize_t cap = a->cap * 2;
        if (cap < n)
            cap = n;
        int64_t *p = PyMem_Realloc(a->v, (size_t)cap * sizeof(int64_t));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        a->v = p;
        PyObject **q = PyMem_Realloc(a->objs, (size_t)cap * sizeof(PyObject *));
        if (q == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        a->objs = q;
        a->cap = cap;
    }
    memmove(a->v + st + m, a->v + st + k, (size_t)(a->n - st - k) * sizeof(int64_t));
    memmove(a->objs + st + m, a->objs + st + k, (size_t)(a->n - st - k) * sizeof(PyObject *));
    for (Py_ssize_t i = 0; i < m; i++)
        a->objs[st + i] = NULL;
    if (tuple == NULL) {
        for (Py_ssize_t i = 0; i < m; i++)
            a->v[st + i] = ids[i];
    }
    else {
        for (Py_ssize_t i = 0; i < m; i++) {
            long long x = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, i));
            if (x == -1 && PyErr_Occurred())
                return -1;
            if (x < 0 || x >= vocab) {
                PyErr_SetString(PyExc_IndexError, "published_contract: a new id outside the "
                                "vocabulary");
                return -1;
            }
            a->v[st + i] = (int64_t)x;
        }
    }
    a->n = n;
    return 0;
}

/* published_contract(ids, rng, state, counters) -> new ids
 * state = (contract_prop, c1, c2, special, memo, facts_fn, outcome_fn, aware_plain,
 *          aware_overlap, max_attempts, table, expand_prop, blocked, redraw_blocked)
 * The window loop of filmorph.arms.patok_published.PatokPublished, draw for draw, then
 * StochasTok on the result (expand_core) without leaving C; adds the arm's counters. */
static PyObject *
native_published_contract(PyObject *module, PyObject *args)
{
    PyObject *ids_obj, *state, *counters, *info_fn, *outcome_fn, *blocked_obj;
    RngObject *rng;
    MemoObject *memo;
    TableObject *table;
    Py_ssize_t iterations, max_attempts, redraw;
    double contract_prop, c1, c2, aware_plain, aware_overlap, prop;
    Py_buffer sview, bview;
    if (!PyArg_ParseTuple(args, "OO!O!O:published_contract", &ids_obj, &RngType, &rng,
                          &PyTuple_Type, &state, &counters) || check_counters(counters) < 0)
        return NULL;
    if (!PyArg_ParseTuple(state, "dddy*O!OOddnO!dOn:published_contract state", &contract_prop,
                          &c1, &c2, &sview, &MemoType, &memo, &info_fn, &outcome_fn,
                          &aware_plain, &aware_overlap, &max_attempts, &TableType, &table, &prop,
                          &blocked_obj, &redraw))
        return NULL;
    const unsigned char *special = (const unsigned char *)sview.buf;
    Py_ssize_t special_len = sview.len;
    PyObject *seq = PySequence_Fast(ids_obj, "published_contract: ids must be a sequence");
    PyObject *out = NULL;
    I64Vec a = {NULL, NULL, 0, 0};
    Expansion x;
    memset(&x, 0, sizeof(x));
    int have_bview = 0, has_special = 0;
    Py_ssize_t windows = 0, cuts = 0, redups = 0, kept = 0, fallbacks = 0, dropped = 0;
    if (seq == NULL)
        goto done;
    if (memo->w == NULL || !table->held) {
        PyErr_SetString(PyExc_ValueError, "published_contract: memo or table not initialised");
        goto done;
    }
    if (special_len != table->vocab || memo->vocab != table->vocab) {
        PyErr_SetString(PyExc_ValueError, "published_contract: special, memo and table "
                        "disagree on the vocabulary size");
        goto done;
    }
    have_bview = get_blocked(blocked_obj, &bview, table);
    if (have_bview < 0)
        goto done;
    a.n = PySequence_Fast_GET_SIZE(seq);
    iterations = (Py_ssize_t)((double)a.n * contract_prop);
    a.v = read_ids(seq, special_len);
    if (a.v == NULL)
        goto done;
    a.cap = a.n ? a.n : 1;
    a.objs = PyMem_Malloc((size_t)a.cap * sizeof(PyObject *));
    if (a.objs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(a.objs, PySequence_Fast_ITEMS(seq), (size_t)a.n * sizeof(PyObject *));
    for (Py_ssize_t i = 0; i < a.n; i++)
        has_special |= special[a.v[i]];
    for (Py_ssize_t it = 0; it < iterations; it++) {
        double r = mt_random(rng);
        Py_ssize_t k = r < c1 ? 2 : (r < c2 ? 3 : 4);
        Py_ssize_t L = a.n, st;
        WEntry *w = NULL;
        if (L < k) {
            st = 0;
            k = L;
            if (has_special && window_special(&a, 0, L, special, special_len)) {
                dropped++;
                continue;
            }
        }
        else {
            st = -1;
            Py_ssize_t span = L - k + 1;
            for (Py_ssize_t attempt = 0; attempt < max_attempts; attempt++) {
                Py_ssize_t s0 = (Py_ssize_t)(mt_random(rng) * (double)span);
                if (has_special) {
                    Py_ssize_t redraw;
                    for (redraw = 0; redraw < max_attempts; redraw++) {
                        if (!window_special(&a, s0, k, special, special_len))
                            break;
                        s0 = (Py_ssize_t)(mt_random(rng) * (double)span);
                    }
                    if (redraw == max_attempts)
                        continue;
                }
                w = memo_window(memo, &a, s0, k, info_fn);
                if (w == NULL)
                    goto done;
                if (!(w->flags & W_AFFIX) ||
                    mt_random(rng) >= ((w->flags & W_OVERLAP) ? aware_overlap : aware_plain)) {
                    st = s0;
                    break;
                }
                w = NULL;
            }
            if (st < 0) {
                fallbacks++;
                st = 0;
                if (has_special && window_special(&a, 0, k, special, special_len)) {
                    dropped++;
                    continue;
                }
            }
        }
        windows++;
        if (w == NULL) {
            w = memo_window(memo, &a, st, k, info_fn);
            if (w == NULL)
                goto done;
        }
        if (w->flags & W_TEXTNONE) {
            kept++;
            continue;
        }
        int32_t j = -1;
        if (w->nchoices && !(mt_random(rng) > aware_plain))
            j = (int32_t)(mt_random(rng) * (double)w->nchoices);
        InlineOut *in = j <= 0 ? &w->inl[j + 1] : NULL;
        if (in == NULL || !in->known) {
            OEntry *o = memo_outcome(memo, w, j, outcome_fn);
            if (o == NULL)
                goto done;
            if (in != NULL && o->tuple == NULL && o->n <= INLINE_IDS && o->red <= 255) {
                in->known = 1;
                in->n = o->isnone ? -1 : (int8_t)o->n;
                in->cut = o->cut;
                in->red = (uint8_t)o->red;
                for (int32_t q = 0; q < o->n; q++) {
                    uint32_t t = (uint32_t)o->ids[q]; /* < 2**24: checked by Memo() */
                    in->ids[3 * q] = (uint8_t)t;
                    in->ids[3 * q + 1] = (uint8_t)(t >> 8);
                    in->ids[3 * q + 2] = (uint8_t)(t >> 16);
                }
            }
            else {  /* the outcome table's entry, used as it is */
                cuts += o->cut;
                redups += o->red;
                if (o->isnone) {
                    kept++;
                    continue;
                }
                if (vec_splice_outcome(&a, st, k, o->n, o->ids, o->tuple, special_len) < 0)
                    goto done;
                continue;
            }
        }
        cuts += in->cut;
        redups += in->red;
        if (in->n < 0) {
            kept++;
            continue;
        }
        int32_t ids5[INLINE_IDS];
        for (int q = 0; q < in->n; q++)
            ids5[q] = (int32_t)((uint32_t)in->ids[3 * q] | ((uint32_t)in->ids[3 * q + 1] << 8) |
                                ((uint32_t)in->ids[3 * q + 2] << 16));
        if (vec_splice_outcome(&a, st, k, in->n, ids5, NULL, special_len) < 0)
            goto done;
    }
    if (expand_core(a.v, a.n, table, rng, prop, have_bview > 0 ? bview.buf : NULL, redraw,
                    &x) == 0)
        out = expansion_list(table, a.v, a.objs, a.n, &x);
done:
    expansion_free(&x);
    PyMem_Free(a.v);
    PyMem_Free(a.objs);
    Py_XDECREF(seq);
    PyBuffer_Release(&sview);
    if (have_bview > 0)
        PyBuffer_Release(&bview);
    if (out == NULL)
        return NULL;
    if (counter_add(counters, K_WINDOWS, windows) < 0 ||
        counter_add(counters, K_WINDOWS_CONTRACTED, windows) < 0 ||
        counter_add(counters, K_AFFIX_CUTS, cuts) < 0 ||
        counter_add(counters, K_REDUP_CUTS, redups) < 0 ||
        counter_add(counters, K_WINDOWS_KEPT, kept) < 0 ||
        counter_add(counters, K_WINDOWS_FIRST_K, fallbacks) < 0 ||
        counter_add(counters, K_WINDOWS_DROPPED_SPECIAL, dropped) < 0 ||
        expansion_counters(counters, &x) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* ------------------------------------------------------------------ morph Patok */

/* A memo keyed by short byte strings (at most BKEY bytes), with up to BVALS int32 values
 * inline and an optional object: the morph and v1 loops' word analyses, spans and rewrites.
 * A table that reaches max_slots / 2 entries (default 2**19 slots, 75 MB) is emptied (a
 * memo: output unchanged). */
#define BKEY 64
#define BVALS 14

typedef struct {
    uint64_t hash;
    uint8_t used, klen;
    int8_t nv; /* number of inline values; -1: too many, read `obj` */
    uint8_t key[BKEY];
    int32_t v[BVALS];
    PyObject *obj; /* strong or NULL */
} BEntry;

typedef struct {
    PyObject_HEAD
    BEntry *t;
    size_t cap, len, max_slots;
} BMemoObject;

static void
bmemo_clear(BMemoObject *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->t[i].used)
            Py_CLEAR(m->t[i].obj);
    memset(m->t, 0, m->cap * sizeof(BEntry));
    m->len = 0;
}

static int
BMemo_init(BMemoObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"max_slots", NULL};
    Py_ssize_t max_slots = 1 << 19;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:BytesMemo", kwlist, &max_slots))
        return -1;
    if (max_slots < 1024 || (max_slots & (max_slots - 1)) != 0) {
        PyErr_SetString(PyExc_ValueError, "BytesMemo: max_slots must be a power of two >= 1024");
        return -1;
    }
    if (self->t != NULL) {
        PyErr_SetString(PyExc_TypeError, "BytesMemo is already initialised");
        return -1;
    }
    self->max_slots = (size_t)max_slots;
    self->cap = 1024;
    self->t = PyMem_Calloc(self->cap, sizeof(BEntry));
    if (self->t == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
BMemo_dealloc(BMemoObject *self)
{
    if (self->t != NULL) {
        bmemo_clear(self);
        PyMem_Free(self->t);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
BMemo_len(BMemoObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(self->len);
}

static PyMethodDef BMemo_methods[] = {
    {"size", (PyCFunction)BMemo_len, METH_NOARGS, "size() -> entries memoised"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BMemoType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "filmorph._native.BytesMemo",
    .tp_basicsize = sizeof(BMemoObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "BytesMemo(max_slots=2**19): a memo of word analyses, spans and rewrites for "
              "the morph and v1 loops (emptied at max_slots / 2 entries; 144 bytes a slot).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)BMemo_init,
    .tp_dealloc = (destructor)BMemo_dealloc,
    .tp_methods = BMemo_methods,
};

static uint64_t
bytes_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)n;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 31;
    h *= 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    return h;
}

static BEntry *
bmemo_find(BMemoObject *m, const uint8_t *key, size_t klen, uint64_t h)
{
    size_t i = (size_t)h & (m->cap - 1);
    while (m->t[i].used) {
        BEntry *e = &m->t[i];
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

static int
b_used(const void *e)
{
    return ((const BEntry *)e)->used;
}

static uint64_t
b_hash(const void *e)
{
    return ((const BEntry *)e)->hash;
}

/* Insert (key, ints of the tuple `vals`, obj) and return the entry; the key is not there. */
static BEntry *
bmemo_insert(BMemoObject *m, const uint8_t *key, size_t klen, uint64_t h, PyObject *vals,
             PyObject *obj)
{
    if (2 * (m->len + 1) > m->cap) {
        if (m->cap >= m->max_slots) {
            bmemo_clear(m);
        }
        else {
            size_t cap = m->cap * 2;
            BEntry *t = PyMem_Calloc(cap, sizeof(BEntry));
            if (t == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            table_rehash((const char *)m->t, m->cap, (char *)t, cap, sizeof(BEntry), b_used,
                         b_hash);
            PyMem_Free(m->t);
            m->t = t;
            m->cap = cap;
        }
    }
    BEntry e;
    memset(&e, 0, sizeof(e));
    e.hash = h;
    e.used = 1;
    e.klen = (uint8_t)klen;
    memcpy(e.key, key, klen);
    Py_ssize_t n = PyTuple_GET_SIZE(vals);
    if (n <= BVALS) {
        e.nv = (int8_t)n;
        for (Py_ssize_t i = 0; i < n; i++) {
            long x = PyLong_AsLong(PyTuple_GET_ITEM(vals, i));
            if ((x == -1 && PyErr_Occurred()) || x < INT32_MIN || x > INT32_MAX) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_OverflowError, "memo value outside int32");
                return NULL;
            }
            e.v[i] = (int32_t)x;
        }
    }
    else {
        e.nv = -1;
    }
    Py_XINCREF(obj);
    e.obj = obj;
    size_t i = (size_t)h & (m->cap - 1);
    while (m->t[i].used)
        i = (i + 1) & (m->cap - 1);
    m->t[i] = e;
    m->len++;
    return &m->t[i];
}

static inline int
is_letter_byte(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c >= 0x80;
}

/* The document's bytes: token i's bytes (blob[bo[v[i]]:bo[v[i]+1]]) at off[i], off[n] in all.
 * A PyMem buffer, or NULL with MemoryError set. */
static uint8_t *
document_bytes(const int64_t *v, Py_ssize_t n, const int64_t *off, const uint8_t *bl,
               const int64_t *bo)
{
    uint8_t *raw = PyMem_Malloc((size_t)(off[n] ? off[n] : 1));
    if (raw == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        memcpy(raw + off[i], bl + bo[v[i]], (size_t)(off[i + 1] - off[i]));
    return raw;
}

/* The next maximal run of letter bytes at or after *i in raw[0:nraw): [*a, *b), and *i moved
 * to its end; 0 when there is none left. */
static inline int
next_letter_run(const uint8_t *raw, Py_ssize_t nraw, Py_ssize_t *i, Py_ssize_t *a,
                Py_ssize_t *b)
{
    Py_ssize_t j = *i;
    while (j < nraw && !is_letter_byte(raw[j]))
        j++;
    if (j >= nraw)
        return 0;
    *a = j;
    while (j < nraw && is_letter_byte(raw[j]))
        j++;
    *b = *i = j;
    return 1;
}

/* bisect.bisect_right(a[0:n], x) and bisect.bisect_left(a[lo:n], x) */
static Py_ssize_t
bisect_right_i64(const int64_t *a, Py_ssize_t n, int64_t x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (x < a[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static Py_ssize_t
bisect_left_i64(const int64_t *a, Py_ssize_t lo, Py_ssize_t n, int64_t x)
{
    Py_ssize_t hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A growable int32 buffer */
typedef struct {
    int32_t *v;
    Py_ssize_t n, cap;
} I32Buf;

static int
i32_reserve(I32Buf *b, Py_ssize_t extra)
{
    if (b->n + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra)
        cap *= 2;
    int32_t *p = PyMem_Realloc(b->v, (size_t)cap * sizeof(int32_t));
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->v = p;
    b->cap = cap;
    return 0;
}

/* A callback's arguments, built only on a memo miss: (bytes,), (bytes, cuts) or
 * (bytes, start, cuts), cuts a tuple of ints. */
typedef struct {
    const uint8_t *p;
    Py_ssize_t len;
    Py_ssize_t start;     /* < 0: no start argument */
    const int32_t *cuts;  /* NULL: no cuts argument */
    Py_ssize_t ncuts;
} LazyArgs;

static PyObject *
lazy_args(const LazyArgs *la)
{
    Py_ssize_t n = 1 + (la->start >= 0) + (la->cuts != NULL), i = 0;
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    PyObject *o = PyBytes_FromStringAndSize((const char *)la->p, la->len);
    if (o == NULL)
        goto fail;
    PyTuple_SET_ITEM(t, i++, o);
    if (la->start >= 0) {
        if ((o = PyLong_FromSsize_t(la->start)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(t, i++, o);
    }
    if (la->cuts != NULL) {
        PyObject *ct = PyTuple_New(la->ncuts);
        if (ct == NULL)
            goto fail;
        PyTuple_SET_ITEM(t, i++, ct);
        for (Py_ssize_t q = 0; q < la->ncuts; q++) {
            if ((o = PyLong_FromLong(la->cuts[q])) == NULL)
                goto fail;
            PyTuple_SET_ITEM(ct, q, o);
        }
    }
    return t;
fail:
    Py_DECREF(t);  /* unset items are NULL: safe */
    return NULL;
}

/* Look `key` up in a BytesMemo, else call fn(*args) (a tuple of ints back) and memoise it
 * when the key fits (klen <= BKEY); append the ints to `out`. Their count, or -1 with an
 * error set. */
static Py_ssize_t
memo_ints(BMemoObject *m, const uint8_t *key, size_t klen, PyObject *fn, const LazyArgs *la,
          I32Buf *out)
{
    BEntry *e = NULL;
    uint64_t h = 0;
    if (klen <= BKEY) {
        h = bytes_hash(key, klen);
        e = bmemo_find(m, key, klen, h);
        if (e != NULL && e->nv >= 0) {
            if (i32_reserve(out, e->nv) < 0)
                return -1;
            memcpy(out->v + out->n, e->v, (size_t)e->nv * sizeof(int32_t));
            out->n += e->nv;
            return e->nv;
        }
    }
    PyObject *res;
    if (e != NULL) {
        res = e->obj;
        Py_INCREF(res);
    }
    else {
        PyObject *fargs = lazy_args(la);
        if (fargs == NULL)
            return -1;
        res = PyObject_Call(fn, fargs, NULL);
        Py_DECREF(fargs);
        if (res == NULL)
            return -1;
        if (!PyTuple_Check(res)) {
            Py_DECREF(res);
            PyErr_SetString(PyExc_TypeError, "a memo callback must return a tuple");
            return -1;
        }
        if (klen <= BKEY &&
            bmemo_insert(m, key, klen, h, res, PyTuple_GET_SIZE(res) > BVALS ? res : NULL) == NULL) {
            Py_DECREF(res);
            return -1;
        }
    }
    Py_ssize_t n = PyTuple_GET_SIZE(res);
    if (i32_reserve(out, n) < 0) {
        Py_DECREF(res);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long x = PyLong_AsLong(PyTuple_GET_ITEM(res, i));
        if ((x == -1 && PyErr_Occurred()) || x < INT32_MIN || x > INT32_MAX) {
            Py_DECREF(res);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_OverflowError, "a memo callback's value is outside int32");
            return -1;
        }
        out->v[out->n + i] = (int32_t)x;
    }
    out->n += n;
    Py_DECREF(res);
    return n;
}

typedef struct {
    Py_ssize_t t1, t2, start, n; /* start: index into the rewrite ids buffer */
} Rewrite;

/* morph_call(ids, rng, state, counters) -> new ids
 * state = (blob, blob_offsets, special, word_memo, word_fn, rewrite_memo, rewrite_fn,
 *          contract_prop, table, expand_prop)
 * filmorph.arms.patok_morph.PatokMorph.__call__, draw for draw: blob[blob_offsets[t]:
 * blob_offsets[t + 1]] are token t's bytes (b"" for a special token); adds the counters. */
static PyObject *
native_morph_call(PyObject *module, PyObject *args)
{
    PyObject *ids_obj, *word_fn, *rewrite_fn, *state, *counters;
    RngObject *rng;
    BMemoObject *wmemo, *rmemo;
    TableObject *table;
    Py_buffer blob, boff, sview;
    double contract_prop, expand_prop;
    if (!PyArg_ParseTuple(args, "OO!O!O:morph_call", &ids_obj, &RngType, &rng, &PyTuple_Type,
                          &state, &counters) || check_counters(counters) < 0)
        return NULL;
    if (!PyArg_ParseTuple(state, "y*y*y*O!OO!OdO!d:morph_call state", &blob, &boff, &sview,
                          &BMemoType, &wmemo, &word_fn, &BMemoType, &rmemo, &rewrite_fn,
                          &contract_prop, &TableType, &table, &expand_prop))
        return NULL;
    PyObject *seq = NULL, *out = NULL;
    int64_t *v = NULL, *off = NULL, *rest = NULL, *rbuf = NULL;
    uint8_t *raw = NULL;
    Rewrite *rw = NULL;
    I32Buf cs = {NULL, 0, 0}, nw = {NULL, 0, 0}; /* a word's cuts; a rewrite's ids */
    Expansion x;
    memset(&x, 0, sizeof(x));
    Py_ssize_t words = 0, cut = 0, kept = 0, morph_cuts = 0, nrw = 0, rlen = 0, rcap = 64;
    const uint8_t *bl = (const uint8_t *)blob.buf;
    const int64_t *bo = (const int64_t *)boff.buf;
    const uint8_t *special = (const uint8_t *)sview.buf;
    Py_ssize_t vocab = sview.len;
    if (boff.len != (vocab + 1) * 8 || vocab != table->vocab || !table->held ||
        wmemo->t == NULL || rmemo->t == NULL) {
        PyErr_SetString(PyExc_ValueError, "morph_call: blob offsets, special, table and memos "
                        "must describe one vocabulary");
        goto done;
    }
    seq = PySequence_Fast(ids_obj, "morph_call: ids must be a sequence");
    if (seq == NULL)
        goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    v = read_ids(seq, vocab);
    off = PyMem_Malloc((size_t)(n + 1) * sizeof(int64_t));
    rw = PyMem_Malloc((size_t)(n + 1) * sizeof(Rewrite));
    rbuf = PyMem_Malloc((size_t)rcap * sizeof(int64_t));
    if (v == NULL || off == NULL || rw == NULL || rbuf == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    int has_special = 0;
    off[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        off[i + 1] = off[i] + (bo[v[i] + 1] - bo[v[i]]);
        has_special |= special[v[i]];
    }
    Py_ssize_t nraw = (Py_ssize_t)off[n];
    raw = document_bytes(v, n, off, bl, bo);
    if (raw == NULL)
        goto done;
    Py_ssize_t last_end = 0;
    uint8_t key[BKEY];
    for (Py_ssize_t i = 0, a, b; next_letter_run(raw, nraw, &i, &a, &b);) {
        /* the word's cuts: memo, else word_fn(bytes) */
        cs.n = 0;
        LazyArgs wa = {raw + a, b - a, -1, NULL, 0};
        Py_ssize_t ncs = memo_ints(wmemo, raw + a, (size_t)(b - a), word_fn, &wa, &cs);
        if (ncs < 0)
            goto done;
        if (ncs == 0)
            continue;
        words++;
        if (mt_random(rng) >= contract_prop)
            continue;
        Py_ssize_t t1 = bisect_right_i64(off, n + 1, a) - 1;
        Py_ssize_t t2 = bisect_left_i64(off, t1, n + 1, b);
        int blocked = t1 < last_end;
        if (!blocked && has_special)
            for (Py_ssize_t t = t1; t < t2; t++)
                if (special[v[t]]) {
                    blocked = 1;
                    break;
                }
        if (blocked) {
            kept++;
            continue;
        }
        int64_t o1 = off[t1], o2 = off[t2];
        /* the rewrite: memo keyed by (span bytes, start, cuts), else rewrite_fn(span, start,
         * cuts); a key longer than BKEY skips the memo */
        size_t klen = (size_t)(o2 - o1) + 4 + 4 * (size_t)ncs;
        if (klen <= BKEY) {
            memcpy(key, raw + o1, (size_t)(o2 - o1));
            int32_t st32 = (int32_t)(a - o1);
            memcpy(key + (o2 - o1), &st32, 4);
            memcpy(key + (o2 - o1) + 4, cs.v, 4 * (size_t)ncs);
        }
        nw.n = 0;
        LazyArgs ra = {raw + o1, (Py_ssize_t)(o2 - o1), (Py_ssize_t)(a - o1), cs.v, ncs};
        Py_ssize_t nnew = memo_ints(rmemo, key, klen <= BKEY ? klen : BKEY + 1, rewrite_fn,
                                    &ra, &nw);
        if (nnew < 0)
            goto done;
        if (nnew == 0) {
            kept++;
            continue;
        }
        if (rlen + nnew > rcap) {
            while (rlen + nnew > rcap)
                rcap *= 2;
            int64_t *p = PyMem_Realloc(rbuf, (size_t)rcap * sizeof(int64_t));
            if (p == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            rbuf = p;
        }
        for (Py_ssize_t q = 0; q < nnew; q++) {
            if (nw.v[q] < 0 || nw.v[q] >= vocab) {
                PyErr_SetString(PyExc_IndexError, "morph_call: a rewrite id outside the "
                                "vocabulary");
                goto done;
            }
            rbuf[rlen + q] = nw.v[q];
        }
        rw[nrw].t1 = t1;
        rw[nrw].t2 = t2;
        rw[nrw].start = rlen;
        rw[nrw].n = nnew;
        nrw++;
        rlen += nnew;
        last_end = t2;
        cut++;
        morph_cuts += ncs;
    }
    /* StochasTok over the tokens outside the cut words, then the merge */
    rest = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (rest == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t nrest = 0;
    for (Py_ssize_t i = 0, r = 0; i < n; i++) {
        if (r < nrw && i >= rw[r].t1) {
            i = rw[r].t2 - 1;
            r++;
            continue;
        }
        rest[nrest++] = v[i];
    }
    if (expand_core(rest, nrest, table, rng, expand_prop, NULL, 0, &x) < 0)
        goto done;
    Py_ssize_t total = n + x.done + rlen;
    for (Py_ssize_t r = 0; r < nrw; r++)
        total -= rw[r].t2 - rw[r].t1;
    out = PyList_New(total);
    if (out == NULL)
        goto done;
    Py_ssize_t wpos = 0, r = 0, q = 0;
    for (Py_ssize_t i = 0; i < n;) {
        if (r < nrw && i == rw[r].t1) {
            for (Py_ssize_t z = 0; z < rw[r].n; z++) {
                PyObject *o = table_int(table, rbuf[rw[r].start + z]);
                if (o == NULL)
                    goto fail;
                PyList_SET_ITEM(out, wpos++, o);
            }
            i = rw[r].t2;
            r++;
            continue;
        }
        /* i is rest position q */
        Py_ssize_t si = x.slot_of != NULL ? x.slot_of[q] : -1;
        if (si < 0) {
            Py_INCREF(items[i]);
            PyList_SET_ITEM(out, wpos++, items[i]);
        }
        else {
            for (Py_ssize_t z = 0; z < x.slots[si].len; z++) {
                PyObject *o = table_int(table, x.slots[si].ids[z]);
                if (o == NULL)
                    goto fail;
                PyList_SET_ITEM(out, wpos++, o);
            }
        }
        q++;
        i++;
    }
    if (wpos != total) {
        PyErr_SetString(PyExc_RuntimeError, "morph_call: output length mismatch");
        goto fail;
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    expansion_free(&x);
    PyMem_Free(v);
    PyMem_Free(off);
    PyMem_Free(raw);
    PyMem_Free(rw);
    PyMem_Free(rbuf);
    PyMem_Free(rest);
    PyMem_Free(cs.v);
    PyMem_Free(nw.v);
    Py_XDECREF(seq);
    PyBuffer_Release(&blob);
    PyBuffer_Release(&boff);
    PyBuffer_Release(&sview);
    if (out == NULL)
        return NULL;
    if (counter_add(counters, K_WORDS_ANALYSED, words) < 0 ||
        counter_add(counters, K_WORDS_CUT, cut) < 0 ||
        counter_add(counters, K_WINDOWS_CONTRACTED, cut) < 0 ||
        counter_add(counters, K_WORDS_KEPT, kept) < 0 ||
        counter_add(counters, K_MORPH_CUTS, morph_cuts) < 0 ||
        expansion_counters(counters, &x) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* ------------------------------------------------------------------ v1 Patok */

/* The words of the document that have affix facts: start, end, where their facts are. */
typedef struct {
    int64_t start, end;
    Py_ssize_t at; /* index into the facts buffer: has_redup, rs, rc, nf, (s, e, kind, cut) * nf */
} Word;

typedef struct {
    int64_t x, y, c;
    int kind;
} Found;

/* The affix matches wholly inside [o1, o2) (document offsets, word order then start order)
 * and, with redups != NULL, the word-initial reduplications starting in it and cut inside
 * it: Patok._inside. Counts in *nfound / *nredup; 0 or -1. */
static int
v1_inside(const Word *w, Py_ssize_t nw, const int32_t *fb, int64_t o1, int64_t o2,
          Found **found, Py_ssize_t *nfound, Py_ssize_t *capf, int64_t *redups,
          Py_ssize_t *nredup)  /* redups: room for 2 * (words meeting the window) */
{
    *nfound = 0;
    if (nredup != NULL)
        *nredup = 0;
    /* bisect_right(ends, o1) */
    Py_ssize_t lo = 0, hi = nw;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (o1 < w[mid].end)
            hi = mid;
        else
            lo = mid + 1;
    }
    for (Py_ssize_t i = lo; i < nw; i++) {
        int64_t a = w[i].start;
        if (a >= o2)
            break;
        const int32_t *f = fb + w[i].at;
        int32_t nf = f[3];
        for (int32_t q = 0; q < nf; q++) {
            const int32_t *g = f + 4 + 4 * q;
            int64_t x = g[0] + a;
            if (x >= o2)
                break;
            if (x >= o1 && g[1] + a <= o2) {
                if (*nfound == *capf) {
                    Py_ssize_t cap = *capf ? 2 * *capf : 16;
                    Found *p = PyMem_Realloc(*found, (size_t)cap * sizeof(Found));
                    if (p == NULL) {
                        PyErr_NoMemory();
                        return -1;
                    }
                    *found = p;
                    *capf = cap;
                }
                Found *o = &(*found)[(*nfound)++];
                o->x = x;
                o->y = g[1] + a;
                o->kind = g[2];
                o->c = g[3] >= 0 ? g[3] + a : -1;
            }
        }
        if (redups != NULL && f[0]) {
            int64_t x = f[1] + a, c = f[2] + a;
            if (o1 <= x && x < o2 && c <= o2) {
                redups[2 * *nredup] = x;
                redups[2 * *nredup + 1] = c;
                (*nredup)++;
            }
        }
    }
    return 0;
}

typedef struct {
    Py_ssize_t st, en;
} Win;

/* v1_call(ids, rng, state, counters) -> new ids
 * state = (blob, blob_offsets, special, is_affix, word_memo, word_fn, canon_memo, canon_fn,
 *          rewrite_memo, rewrite_fn, (contract_prop, expand_prop, c1, c2, aware_plain,
 *          aware_overlap), table)
 * filmorph.arms.patok.Patok.__call__, draw for draw, counters included (the same keys).
 * word_fn(word bytes) -> its facts as flat ints (() when none); canon_fn(span) -> (id,) or
 * (); rewrite_fn(span, cuts) -> ids. */
static PyObject *
native_v1_call(PyObject *module, PyObject *args)
{
    PyObject *ids_obj, *word_fn, *canon_fn, *rewrite_fn, *state, *counters;
    RngObject *rng;
    BMemoObject *wmemo, *cmemo, *rmemo;
    TableObject *table;
    Py_buffer blob, boff, sview, aview;
    double contract_prop, expand_prop, c1, c2, aware, aware_overlap;
    if (!PyArg_ParseTuple(args, "OO!O!O:v1_call", &ids_obj, &RngType, &rng, &PyTuple_Type,
                          &state, &counters) || check_counters(counters) < 0)
        return NULL;
    if (!PyArg_ParseTuple(state, "y*y*y*y*O!OO!OO!O(dddddd)O!:v1_call state", &blob, &boff,
                          &sview, &aview, &BMemoType, &wmemo, &word_fn, &BMemoType, &cmemo,
                          &canon_fn, &BMemoType, &rmemo, &rewrite_fn, &contract_prop,
                          &expand_prop, &c1, &c2, &aware, &aware_overlap, &TableType, &table))
        return NULL;
    PyObject *seq = NULL, *out = NULL;
    int64_t *v = NULL, *off = NULL, *cv = NULL;
    PyObject **cobjs = NULL;
    uint8_t *raw = NULL, *taken = NULL;
    Word *words = NULL;
    Win *wins = NULL;
    Found *found = NULL;
    int64_t *scratch = NULL;
    Py_ssize_t capf = 0, nwords = 0, capw = 0, nwin = 0, scratch_cap = 0;
    I32Buf fb = {NULL, 0, 0}, tmp = {NULL, 0, 0};
    Expansion x;
    memset(&x, 0, sizeof(x));
    Py_ssize_t cnt[11] = {0};
    enum { C_ATT, C_BLOCK, C_SKIP, C_CONTR, C_ONE, C_CUT, C_FALLBACK, C_PRE, C_INF, C_SUF,
           C_REDUP };
    const uint8_t *bl = (const uint8_t *)blob.buf;
    const int64_t *bo = (const int64_t *)boff.buf;
    const uint8_t *special = (const uint8_t *)sview.buf, *is_affix = (const uint8_t *)aview.buf;
    Py_ssize_t vocab = sview.len;
    if (boff.len != (vocab + 1) * 8 || aview.len != vocab || vocab != table->vocab ||
        !table->held || wmemo->t == NULL || cmemo->t == NULL || rmemo->t == NULL) {
        PyErr_SetString(PyExc_ValueError, "v1_call: blob offsets, special, is_affix, table and "
                        "memos must describe one vocabulary");
        goto done;
    }
    seq = PySequence_Fast(ids_obj, "v1_call: ids must be a sequence");
    if (seq == NULL)
        goto done;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    v = read_ids(seq, vocab);
    if (v == NULL)
        goto done;
    Py_ssize_t attempts = n >= 2 ? (Py_ssize_t)(contract_prop * (double)n) : 0;
    cnt[C_ATT] = attempts;
    if (attempts > 0) {
        off = PyMem_Malloc((size_t)(n + 1) * sizeof(int64_t));
        taken = PyMem_Malloc((size_t)n);
        wins = PyMem_Malloc((size_t)attempts * sizeof(Win));
        if (off == NULL || taken == NULL || wins == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        off[0] = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            off[i + 1] = off[i] + (bo[v[i] + 1] - bo[v[i]]);
            taken[i] = special[v[i]] ? 1 : 0;
        }
        Py_ssize_t nraw = (Py_ssize_t)off[n];
        raw = document_bytes(v, n, off, bl, bo);
        if (raw == NULL)
            goto done;
        /* the words with facts: maximal letter-byte runs of 4 bytes or more */
        for (Py_ssize_t i = 0, a, b; next_letter_run(raw, nraw, &i, &a, &b);) {
            if (b - a < 4)
                continue;
            Py_ssize_t at = fb.n;
            LazyArgs la = {raw + a, b - a, -1, NULL, 0};
            Py_ssize_t got = memo_ints(wmemo, raw + a, (size_t)(b - a), word_fn, &la, &fb);
            if (got < 0)
                goto done;
            if (got == 0)
                continue;
            if (got < 4 || got != 4 + 4 * (Py_ssize_t)fb.v[at + 3]) {
                PyErr_SetString(PyExc_ValueError, "v1_call: malformed word facts");
                goto done;
            }
            if (nwords == capw) {
                capw = capw ? 2 * capw : 32;
                Word *p = PyMem_Realloc(words, (size_t)capw * sizeof(Word));
                if (p == NULL) {
                    PyErr_NoMemory();
                    goto done;
                }
                words = p;
            }
            words[nwords].start = a;
            words[nwords].end = b;
            words[nwords].at = at;
            nwords++;
        }
        /* the windows */
        for (Py_ssize_t t = 0; t < attempts; t++) {
            double r = mt_random(rng);
            Py_ssize_t k = r < c1 ? 2 : (r < c2 ? 3 : 4);
            if (k > n)
                k = n;
            Py_ssize_t st = (Py_ssize_t)(mt_random(rng) * (double)(n - k + 1)), en = st + k;
            int hit = 0;
            for (Py_ssize_t q = st; q < en; q++)
                hit |= taken[q];
            if (hit) {
                cnt[C_BLOCK]++;
                continue;
            }
            int affix = 0;
            for (Py_ssize_t q = st; q < en; q++)
                affix |= is_affix[v[q]];
            if (affix) {
                double aw = aware;
                if (aware_overlap != aware) {
                    Py_ssize_t nf;
                    if (v1_inside(words, nwords, fb.v, off[st], off[en], &found, &nf, &capf,
                                  NULL, NULL) < 0)
                        goto done;
                    int64_t end = -1;
                    for (Py_ssize_t q = 0; q < nf; q++) {
                        if (found[q].x < end) {
                            aw = aware_overlap;
                            break;
                        }
                        if (found[q].y > end)
                            end = found[q].y;
                    }
                }
                if (mt_random(rng) < aw) {
                    cnt[C_SKIP]++;
                    continue;
                }
            }
            memset(taken + st, 1, (size_t)k);
            wins[nwin].st = st;
            wins[nwin].en = en;
            nwin++;
        }
    }
    /* the plans, in window order, and the contracted sequence */
    Py_ssize_t ccap = n + 16, cn = 0;
    cv = PyMem_Malloc((size_t)ccap * sizeof(int64_t));
    cobjs = PyMem_Malloc((size_t)ccap * sizeof(PyObject *));
    if (cv == NULL || cobjs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (nwin > 1) {  /* in position order: disjoint windows, marked by their start */
        Py_ssize_t *end_at = PyMem_Malloc((size_t)n * sizeof(Py_ssize_t));
        if (end_at == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            end_at[i] = -1;
        for (Py_ssize_t i = 0; i < nwin; i++)
            end_at[wins[i].st] = wins[i].en;
        Py_ssize_t w = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            if (end_at[i] >= 0) {
                wins[w].st = i;
                wins[w++].en = end_at[i];
            }
        PyMem_Free(end_at);
    }
    Py_ssize_t prev = 0;
    Py_ssize_t nraw = attempts > 0 ? (Py_ssize_t)off[n] : 0;
    cnt[C_CONTR] = nwin;
    for (Py_ssize_t wi = 0; wi < nwin; wi++) {
        Py_ssize_t st = wins[wi].st, en = wins[wi].en;
        int64_t o1 = off[st], o2 = off[en];
        /* 0: keep the window's ids; 1: tmp holds the new ids (a token or a rewrite) */
        int replace = 0;
        tmp.n = 0;
        if ((o1 < nraw && raw[o1] >= 0x80 && raw[o1] < 0xC0) ||
            (o2 < nraw && raw[o2] >= 0x80 && raw[o2] < 0xC0)) {
            replace = 0;
        }
        else {
            /* words meeting [o1, o2) number at most (o2 - o1) / 4 + 2 (4 bytes or more each) */
            Py_ssize_t bound = (Py_ssize_t)((o2 - o1) / 4 + 2);
            if (bound > scratch_cap) {
                int64_t *p = PyMem_Realloc(scratch, (size_t)(6 * bound + 8) * sizeof(int64_t));
                if (p == NULL) {
                    PyErr_NoMemory();
                    goto done;
                }
                scratch = p;
                scratch_cap = bound;
            }
            int64_t *cuts = scratch, *redups = scratch + (4 * bound + 6);
            int32_t *rel = (int32_t *)(scratch + (2 * bound + 3)); /* offsets in a window */
            Py_ssize_t ncuts = 0;
            int any_cuts = 0;
            if (mt_random(rng) < aware) {
                /* bisect_right(ends, o1): is a word with facts meeting the window? */
                Py_ssize_t lo = 0, hi = nwords;
                while (lo < hi) {
                    Py_ssize_t mid = (lo + hi) / 2;
                    if (o1 < words[mid].end)
                        hi = mid;
                    else
                        lo = mid + 1;
                }
                if (lo < nwords && words[lo].start < o2) {
                    Py_ssize_t nf, nr;
                    if (v1_inside(words, nwords, fb.v, o1, o2, &found, &nf, &capf, redups,
                                  &nr) < 0)
                        goto done;
                    if (nf) {
                        Found *f = &found[(Py_ssize_t)(mt_random(rng) * (double)nf)];
                        cuts[ncuts++] = f->x;
                        cuts[ncuts++] = f->y;
                        cnt[C_PRE + f->kind]++;
                        any_cuts = 1;
                        if (0 <= f->c && f->c <= o2) {
                            cuts[ncuts++] = f->c;
                            cnt[C_REDUP]++;
                        }
                    }
                    for (Py_ssize_t q = 0; q < nr; q++) {
                        cuts[ncuts++] = redups[2 * q];
                        cuts[ncuts++] = redups[2 * q + 1];
                        cnt[C_REDUP]++;
                        any_cuts = 1;
                    }
                }
            }
            if (!any_cuts) {
                LazyArgs la = {raw + o1, (Py_ssize_t)(o2 - o1), -1, NULL, 0};
                Py_ssize_t got = memo_ints(cmemo, raw + o1, (size_t)(o2 - o1), canon_fn, &la,
                                           &tmp);
                if (got < 0)
                    goto done;
                if (got == 1) {
                    cnt[C_ONE]++;
                    replace = 1;
                }
            }
            else {
                /* the distinct cuts strictly inside the window, sorted, relative to o1 */
                for (Py_ssize_t q = 1; q < ncuts; q++) {  /* a few values: insertion sort */
                    int64_t c = cuts[q];
                    Py_ssize_t z = q;
                    while (z > 0 && cuts[z - 1] > c) {
                        cuts[z] = cuts[z - 1];
                        z--;
                    }
                    cuts[z] = c;
                }
                Py_ssize_t nrel = 0;
                for (Py_ssize_t q = 0; q < ncuts; q++) {
                    if (q && cuts[q] == cuts[q - 1])
                        continue;
                    if (o1 < cuts[q] && cuts[q] < o2)
                        rel[nrel++] = (int32_t)(cuts[q] - o1);
                }
                cnt[C_CUT]++;
                uint8_t key[BKEY];
                size_t klen = (size_t)(o2 - o1) + 4 * (size_t)nrel;
                if (klen <= BKEY) {
                    memcpy(key, raw + o1, (size_t)(o2 - o1));
                    for (Py_ssize_t q = 0; q < nrel; q++) {
                        int32_t c32 = (int32_t)rel[q];
                        memcpy(key + (o2 - o1) + 4 * q, &c32, 4);
                    }
                }
                LazyArgs la = {raw + o1, (Py_ssize_t)(o2 - o1), -1, rel, nrel};
                Py_ssize_t got = memo_ints(rmemo, key, klen <= BKEY ? klen : BKEY + 1,
                                           rewrite_fn, &la, &tmp);
                if (got < 0)
                    goto done;
                if (got == 0)
                    cnt[C_FALLBACK]++;
                else
                    replace = 1;
            }
        }
        Py_ssize_t need = cn + (st - prev) + (replace ? tmp.n : en - st);
        if (need > ccap) {
            while (need > ccap)
                ccap *= 2;
            int64_t *p = PyMem_Realloc(cv, (size_t)ccap * sizeof(int64_t));
            if (p == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            cv = p;
            PyObject **q = PyMem_Realloc(cobjs, (size_t)ccap * sizeof(PyObject *));
            if (q == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            cobjs = q;
        }
        for (Py_ssize_t i = prev; i < st; i++) {
            cv[cn] = v[i];
            cobjs[cn++] = items[i];
        }
        if (replace) {
            for (Py_ssize_t q = 0; q < tmp.n; q++) {
                if (tmp.v[q] < 0 || tmp.v[q] >= vocab) {
                    PyErr_SetString(PyExc_IndexError, "v1_call: a new id outside the vocabulary");
                    goto done;
                }
                cv[cn] = tmp.v[q];
                cobjs[cn++] = NULL;
            }
        }
        else {
            for (Py_ssize_t i = st; i < en; i++) {
                cv[cn] = v[i];
                cobjs[cn++] = items[i];
            }
        }
        prev = en;
    }
    if (cn + (n - prev) > ccap) {
        ccap = cn + (n - prev);
        int64_t *p = PyMem_Realloc(cv, (size_t)ccap * sizeof(int64_t));
        PyObject **q = p == NULL ? NULL : PyMem_Realloc(cobjs, (size_t)ccap * sizeof(PyObject *));
        if (p != NULL)
            cv = p;
        if (q == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        cobjs = q;
    }
    for (Py_ssize_t i = prev; i < n; i++) {
        cv[cn] = v[i];
        cobjs[cn++] = items[i];
    }
    if (expand_core(cv, cn, table, rng, expand_prop, is_affix, 0, &x) == 0)
        out = expansion_list(table, cv, cobjs, cn, &x);
done:
    expansion_free(&x);
    PyMem_Free(v);
    PyMem_Free(off);
    PyMem_Free(cv);
    PyMem_Free(cobjs);
    PyMem_Free(raw);
    PyMem_Free(taken);
    PyMem_Free(words);
    PyMem_Free(wins);
    PyMem_Free(found);
    PyMem_Free(scratch);
    PyMem_Free(fb.v);
    PyMem_Free(tmp.v);
    Py_XDECREF(seq);
    PyBuffer_Release(&blob);
    PyBuffer_Release(&boff);
    PyBuffer_Release(&sview);
    PyBuffer_Release(&aview);
    if (out == NULL)
        return NULL;
    /* the keys the Python loop adds, zeros included where it adds them */
    int bad = counter_add(counters, K_CONTRACT_ATTEMPTS, cnt[C_ATT]) < 0;
    if (cnt[C_ATT] && !bad)
        bad = counter_add(counters, K_WINDOWS_BLOCKED, cnt[C_BLOCK]) < 0 ||
              counter_add(counters, K_WINDOWS_SKIPPED_AFFIX, cnt[C_SKIP]) < 0;
    if (cnt[C_CONTR] && !bad)
        bad = counter_add(counters, K_WINDOWS_CONTRACTED, cnt[C_CONTR]) < 0 ||
              counter_add(counters, K_WINDOWS_TO_ONE_TOKEN, cnt[C_ONE]) < 0 ||
              counter_add(counters, K_WINDOWS_CUT, cnt[C_CUT]) < 0;
    static const enum CounterKey optional[5] = {K_WINDOWS_FALLBACK, K_SPLIT_PREFIX,
                                                K_SPLIT_INFIX, K_SPLIT_SUFFIX, K_SPLIT_REDUP};
    for (int q = 0; q < 5 && !bad; q++)
        if (cnt[C_FALLBACK + q])
            bad = counter_add(counters, optional[q], cnt[C_FALLBACK + q]) < 0;
    if (!bad)
        bad = expansion_counters(counters, &x) < 0;
    if (bad) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyMethodDef module_methods[] = {
    {"expand", (PyCFunction)(void (*)(void))native_expand, METH_VARARGS | METH_KEYWORDS,
     "expand(ids, table, rng, expand_prop, blocked=None, redraw_blocked=0, slots=False,\n"
     "counters=None) -> new ids, or {position: pieces} when slots: StochasTok's expansion\n"
     "loop, draw for draw as filmorph.arms.stochastok.expand_slots (counters included)."},
    {"published_contract", (PyCFunction)native_published_contract, METH_VARARGS,
     "published_contract(ids, rng, state, counters) -> new ids: the published Patok (window\n"
     "loop, then StochasTok), draw for draw as filmorph.arms.patok_published.PatokPublished."},
    {"morph_call", (PyCFunction)native_morph_call, METH_VARARGS,
     "morph_call(ids, rng, state, counters) -> new ids: the morph Patok, draw for draw as\n"
     "filmorph.arms.patok_morph.PatokMorph."},
    {"v1_call", (PyCFunction)native_v1_call, METH_VARARGS,
     "v1_call(ids, rng, state, counters) -> new ids: the v1 Patok, draw for draw as\n"
     "filmorph.arms.patok.Patok."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "filmorph._native",
    .m_doc = "The arms' hot loops in C (optional; the Python code in filmorph.arms is the "
             "reference and gives the same output).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    mt_base_init();
    for (int i = 0; i < K_COUNT; i++) {
        counter_keys[i] = PyUnicode_InternFromString(counter_names[i]);
        if (counter_keys[i] == NULL)
            return NULL;
    }
    if (PyType_Ready(&RngType) < 0 || PyType_Ready(&TableType) < 0 ||
        PyType_Ready(&MemoType) < 0 || PyType_Ready(&BMemoType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RngType);
    if (PyModule_AddObject(m, "Rng", (PyObject *)&RngType) < 0) {
        Py_DECREF(&RngType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&TableType);
    if (PyModule_AddObject(m, "Table", (PyObject *)&TableType) < 0) {
        Py_DECREF(&TableType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&MemoType);
    if (PyModule_AddObject(m, "Memo", (PyObject *)&MemoType) < 0) {
        Py_DECREF(&MemoType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&BMemoType);
    if (PyModule_AddObject(m, "BytesMemo", (PyObject *)&BMemoType) < 0) {
        Py_DECREF(&BMemoType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
