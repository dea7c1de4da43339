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

/* ------------------------------------------------------------------ Table */

typedef struct {
    PyObject_HEAD
    Py_buffer offsets, lefts, rights;
    int held;
    Py_ssize_t vocab;
} TableObject;

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

static int
Table_init(TableObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"offsets", "lefts", "rights", NULL};
    PyObject *o, *l, *r;
    if (self->held) {
        PyErr_SetString(PyExc_TypeError, "Table is already initialised");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:Table", kwlist, &o, &l, &r))
        return -1;
    if (get_int64_buffer(o, &self->offsets, "offsets") < 0)
        return -1;
    if (get_int64_buffer(l, &self->lefts, "lefts") < 0) {
        PyBuffer_Release(&self->offsets);
        return -1;
    }
    if (get_int64_buffer(r, &self->rights, "rights") < 0) {
        PyBuffer_Release(&self->offsets);
        PyBuffer_Release(&self->lefts);
        return -1;
    }
    self->held = 1;
    Py_ssize_t n_off = self->offsets.len / 8, n_pairs = self->lefts.len / 8;
    const int64_t *off = (const int64_t *)self->offsets.buf;
    if (n_off < 1 || self->rights.len != self->lefts.len || off[0] != 0 ||
        off[n_off - 1] != n_pairs) {
        PyErr_SetString(PyExc_ValueError, "Table: offsets do not describe lefts/rights");
        return -1;
    }
    for (Py_ssize_t i = 1; i < n_off; i++) {
        if (off[i] < off[i - 1]) {
            PyErr_SetString(PyExc_ValueError, "Table: offsets decrease");
            return -1;
        }
    }
    self->vocab = n_off - 1;
    return 0;
}

static void
Table_dealloc(TableObject *self)
{
    if (self->held) {
        PyBuffer_Release(&self->offsets);
        PyBuffer_Release(&self->lefts);
        PyBuffer_Release(&self->rights);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "filmorph._native.Table",
    .tp_basicsize = sizeof(TableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Table(offsets, lefts, rights): an expansion table's CSR arrays (int64 buffers).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Table_init,
    .tp_dealloc = (destructor)Table_dealloc,
};

/* ------------------------------------------------------------------ expand */

/* The pieces of one expanded position, in expansion order of slots. */
typedef struct {
    Py_ssize_t pos;
    Py_ssize_t len, cap;
    int64_t *ids;
} Slot;

static int
slot_reserve(Slot *s, Py_ssize_t need)
{
    if (need <= s->cap)
        return 0;
    Py_ssize_t cap = s->cap ? s->cap * 2 : 4;
    while (cap < need)
        cap *= 2;
    int64_t *p = PyMem_Realloc(s->ids, (size_t)cap * sizeof(int64_t));
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->ids = p;
    s->cap = cap;
    return 0;
}

static int
read_id(PyObject *item, Py_ssize_t vocab, int64_t *out)
{
    long long v = PyLong_AsLongLong(item);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v >= vocab) {
        PyErr_Format(PyExc_IndexError, "token id %lld outside the table's vocabulary (%zd)",
                     v, vocab);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* expand(ids, table, rng, expand_prop, blocked=None, redraw_blocked=0, slots=False)
 * -> (list of new ids, or {position: [pieces]} when slots; attempts; expansions) */
static PyObject *
native_expand(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"ids", "table", "rng", "expand_prop", "blocked",
                             "redraw_blocked", "slots", NULL};
    PyObject *ids_obj, *blocked_obj = Py_None;
    TableObject *table;
    RngObject *rng;
    double prop;
    Py_ssize_t redraw = 0;
    int want_slots = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O!d|Onp:expand", kwlist, &ids_obj,
                                     &TableType, &table, &RngType, &rng, &prop, &blocked_obj,
                                     &redraw, &want_slots))
        return NULL;
    if (!table->held) {
        PyErr_SetString(PyExc_ValueError, "expand: the table is not initialised");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(ids_obj, "expand: ids must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n0 = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Py_ssize_t attempts = (Py_ssize_t)(prop * (double)n0);
    Py_buffer bview;
    const unsigned char *blocked = NULL;
    Py_ssize_t blocked_len = 0;
    PyObject *result = NULL;
    Slot *slots = NULL;
    Py_ssize_t *slot_of = NULL;
    Py_ssize_t nslots = 0, done = 0;
    int have_bview = 0;

    if (attempts <= 0) {
        attempts = attempts < 0 ? 0 : attempts;
        result = want_slots ? PyDict_New() : PySequence_List(seq);
        goto finish;
    }
    if (blocked_obj != Py_None) {
        if (PyObject_GetBuffer(blocked_obj, &bview, PyBUF_SIMPLE) < 0)
            goto finish;
        have_bview = 1;
        blocked = (const unsigned char *)bview.buf;
        blocked_len = bview.len;
    }
    slots = PyMem_Calloc((size_t)attempts, sizeof(Slot));
    slot_of = PyMem_Malloc((size_t)n0 * sizeof(Py_ssize_t));
    if (slots == NULL || slot_of == NULL) {
        PyErr_NoMemory();
        goto finish;
    }
    for (Py_ssize_t i = 0; i < n0; i++)
        slot_of[i] = -1;
    {
        const int64_t *off = (const int64_t *)table->offsets.buf;
        const int64_t *lefts = (const int64_t *)table->lefts.buf;
        const int64_t *rights = (const int64_t *)table->rights.buf;
        Py_ssize_t vocab = table->vocab;
        Py_ssize_t pieces_in_expanded = 0, maxc = 2;
        for (Py_ssize_t a = 0; a < attempts; a++) {
            Slot *sl = NULL;
            Py_ssize_t s = 0, c = 0, j = 0;
            int64_t tid = 0;
            int ok = 0;
            for (Py_ssize_t draw = 0; draw <= redraw; draw++) {
                if (pieces_in_expanded &&
                    mt_random(rng) * (double)(n0 + done) < (double)pieces_in_expanded) {
                    for (;;) {
                        sl = &slots[(Py_ssize_t)(mt_random(rng) * (double)nslots)];
                        c = sl->len;
                        if (c == maxc || mt_random(rng) * (double)maxc < (double)c)
                            break;
                    }
                    j = (Py_ssize_t)(mt_random(rng) * (double)c);
                    tid = sl->ids[j];
                }
                else {
                    s = (Py_ssize_t)(mt_random(rng) * (double)n0);
                    while (slot_of[s] >= 0)
                        s = (Py_ssize_t)(mt_random(rng) * (double)n0);
                    sl = NULL;
                    if (read_id(items[s], vocab, &tid) < 0)
                        goto finish;
                }
                if (blocked == NULL)
                    { ok = 1; break; }
                if (tid >= blocked_len) {
                    PyErr_Format(PyExc_IndexError, "token id %lld outside `blocked` (%zd)",
                                 (long long)tid, blocked_len);
                    goto finish;
                }
                if (!blocked[tid])
                    { ok = 1; break; }
            }
            if (!ok)
                continue;
            int64_t k = off[tid + 1] - off[tid];
            if (!k)
                continue;
            int64_t m = off[tid] + (int64_t)(mt_random(rng) * (double)k);
            if (sl == NULL) {
                sl = &slots[nslots++];
                sl->pos = s;
                if (slot_reserve(sl, 2) < 0)
                    goto finish;
                sl->ids[0] = lefts[m];
                sl->ids[1] = rights[m];
                sl->len = 2;
                slot_of[s] = nslots - 1;
                pieces_in_expanded += 2;
            }
            else {
                if (slot_reserve(sl, c + 1) < 0)
                    goto finish;
                memmove(sl->ids + j + 2, sl->ids + j + 1, (size_t)(c - j - 1) * sizeof(int64_t));
                sl->ids[j] = lefts[m];
                sl->ids[j + 1] = rights[m];
                sl->len = c + 1;
                pieces_in_expanded += 1;
                if (c + 1 > maxc)
                    maxc = c + 1;
            }
            done++;
        }
    }
    if (want_slots) {
        result = PyDict_New();
        if (result == NULL)
            goto finish;
        for (Py_ssize_t i = 0; i < nslots; i++) {
            PyObject *lst = PyList_New(slots[i].len);
            if (lst == NULL)
                goto fail_result;
            for (Py_ssize_t q = 0; q < slots[i].len; q++) {
                PyObject *v = PyLong_FromLongLong(slots[i].ids[q]);
                if (v == NULL) {
                    Py_DECREF(lst);
                    goto fail_result;
                }
                PyList_SET_ITEM(lst, q, v);
            }
            PyObject *key = PyLong_FromSsize_t(slots[i].pos);
            if (key == NULL || PyDict_SetItem(result, key, lst) < 0) {
                Py_XDECREF(key);
                Py_DECREF(lst);
                goto fail_result;
            }
            Py_DECREF(key);
            Py_DECREF(lst);
        }
    }
    else {
        result = PyList_New(n0 + done);
        if (result == NULL)
            goto finish;
        Py_ssize_t w = 0;
        for (Py_ssize_t i = 0; i < n0; i++) {
            Py_ssize_t si = slot_of[i];
            if (si < 0) {
                Py_INCREF(items[i]);
                PyList_SET_ITEM(result, w++, items[i]);
            }
            else {
                for (Py_ssize_t q = 0; q < slots[si].len; q++) {
                    PyObject *v = PyLong_FromLongLong(slots[si].ids[q]);
                    if (v == NULL)
                        goto fail_result;  /* the unset tail is NULL: safe to DECREF */
                    PyList_SET_ITEM(result, w++, v);
                }
            }
        }
    }
    goto finish;
fail_result:
    Py_CLEAR(result);
finish:
    if (slots != NULL) {
        for (Py_ssize_t i = 0; i < nslots; i++)
            PyMem_Free(slots[i].ids);
        PyMem_Free(slots);
    }
    PyMem_Free(slot_of);
    if (have_bview)
        PyBuffer_Release(&bview);
    Py_DECREF(seq);
    if (result == NULL)
        return NULL;
    return Py_BuildValue("(Nnn)", result, attempts, done);
}

/* ------------------------------------------------------------------ published Patok */

/* A growable int64 sequence: the document being rewritten. */
typedef struct {
    int64_t *v;
    Py_ssize_t n, cap;
} I64Vec;

static int
vec_splice(I64Vec *a, Py_ssize_t st, Py_ssize_t k, PyObject *new_seq)
{
    /* a[st:st+k] = new_seq (a tuple of ints) */
    Py_ssize_t m = PyTuple_GET_SIZE(new_seq);
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
        a->cap = cap;
    }
    memmove(a->v + st + m, a->v + st + k, (size_t)(a->n - st - k) * sizeof(int64_t));
    for (Py_ssize_t i = 0; i < m; i++) {
        long long x = PyLong_AsLongLong(PyTuple_GET_ITEM(new_seq, i));
        if (x == -1 && PyErr_Occurred())
            return -1;
        a->v[st + i] = (int64_t)x;
    }
    a->n = n;
    return 0;
}

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

/* The window's memoised facts: spans.get(key) or info_fn(key); a new reference. */
static PyObject *
window_info(const I64Vec *a, Py_ssize_t st, Py_ssize_t k, PyObject *spans, PyObject *info_fn)
{
    PyObject *key = PyTuple_New(k);
    if (key == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *v = PyLong_FromLongLong(a->v[st + i]);
        if (v == NULL) {
            Py_DECREF(key);
            return NULL;
        }
        PyTuple_SET_ITEM(key, i, v);
    }
    PyObject *info = PyDict_GetItemWithError(spans, key);
    if (info != NULL) {
        Py_INCREF(info);
    }
    else if (!PyErr_Occurred()) {
        info = PyObject_CallOneArg(info_fn, key);
        if (info != NULL && (!PyTuple_Check(info) || PyTuple_GET_SIZE(info) != 5)) {
            PyErr_SetString(PyExc_TypeError, "published_contract: info must be a 5-tuple");
            Py_CLEAR(info);
        }
    }
    Py_DECREF(key);
    return info;
}

/* published_contract(ids, rng, iterations, c1, c2, special, has_special, spans, info_fn,
 *                    outcome_fn, aware_plain, aware_overlap, max_attempts)
 * -> (new ids, windows, cuts, redups, kept, fallbacks, dropped)
 * The window loop of filmorph.arms.patok_published.PatokPublished, draw for draw. */
static PyObject *
native_published_contract(PyObject *module, PyObject *args)
{
    PyObject *ids_obj, *spans, *info_fn, *outcome_fn;
    RngObject *rng;
    Py_ssize_t iterations, max_attempts;
    double c1, c2, aware_plain, aware_overlap;
    Py_buffer sview;
    int has_special;
    if (!PyArg_ParseTuple(args, "OO!nddy*pO!OOddn:published_contract", &ids_obj, &RngType, &rng,
                          &iterations, &c1, &c2, &sview, &has_special, &PyDict_Type, &spans,
                          &info_fn, &outcome_fn, &aware_plain, &aware_overlap, &max_attempts))
        return NULL;
    const unsigned char *special = (const unsigned char *)sview.buf;
    Py_ssize_t special_len = sview.len;
    PyObject *seq = PySequence_Fast(ids_obj, "published_contract: ids must be a sequence");
    PyObject *out = NULL, *info = NULL;
    I64Vec a = {NULL, 0, 0};
    Py_ssize_t windows = 0, cuts = 0, redups = 0, kept = 0, fallbacks = 0, dropped = 0;
    if (seq == NULL)
        goto done;
    a.n = PySequence_Fast_GET_SIZE(seq);
    a.cap = a.n + 16;
    a.v = PyMem_Malloc((size_t)a.cap * sizeof(int64_t));
    if (a.v == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < a.n; i++) {
        long long x = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (x == -1 && PyErr_Occurred())
            goto done;
        if (x < 0 || x >= special_len) {
            PyErr_Format(PyExc_IndexError, "token id %lld outside the vocabulary (%zd)", x,
                         special_len);
            goto done;
        }
        a.v[i] = (int64_t)x;
    }
    for (Py_ssize_t it = 0; it < iterations; it++) {
        double r = mt_random(rng);
        Py_ssize_t k = r < c1 ? 2 : (r < c2 ? 3 : 4);
        Py_ssize_t L = a.n, st;
        Py_CLEAR(info);
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
                info = window_info(&a, s0, k, spans, info_fn);
                if (info == NULL)
                    goto done;
                int affix = PyObject_IsTrue(PyTuple_GET_ITEM(info, 4));
                if (affix < 0)
                    goto done;
                if (!affix) {
                    st = s0;
                    break;
                }
                int overlap = PyObject_IsTrue(PyTuple_GET_ITEM(info, 1));
                if (overlap < 0)
                    goto done;
                if (mt_random(rng) >= (overlap ? aware_overlap : aware_plain)) {
                    st = s0;
                    break;
                }
                Py_CLEAR(info);
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
        if (info == NULL) {
            info = window_info(&a, st, k, spans, info_fn);
            if (info == NULL)
                goto done;
        }
        if (PyTuple_GET_ITEM(info, 0) == Py_None) {
            kept++;
            continue;
        }
        PyObject *choices = PyTuple_GET_ITEM(info, 2);
        PyObject *outcomes = PyTuple_GET_ITEM(info, 3);
        Py_ssize_t nchoices = PyObject_Length(choices);
        if (nchoices < 0 || !PyDict_Check(outcomes)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "published_contract: outcomes must be a dict");
            goto done;
        }
        Py_ssize_t j = -1;
        if (nchoices && !(mt_random(rng) > aware_plain))
            j = (Py_ssize_t)(mt_random(rng) * (double)nchoices);
        PyObject *jkey = PyLong_FromSsize_t(j);
        if (jkey == NULL)
            goto done;
        PyObject *res = PyDict_GetItemWithError(outcomes, jkey);
        if (res != NULL) {
            Py_INCREF(res);
        }
        else if (!PyErr_Occurred()) {
            res = PyObject_CallFunctionObjArgs(outcome_fn, info, jkey, NULL);
        }
        Py_DECREF(jkey);
        if (res == NULL)
            goto done;
        if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 3) {
            Py_DECREF(res);
            PyErr_SetString(PyExc_TypeError, "published_contract: an outcome is a 3-tuple");
            goto done;
        }
        Py_ssize_t cut = PyObject_IsTrue(PyTuple_GET_ITEM(res, 1));
        Py_ssize_t red = PyLong_AsSsize_t(PyTuple_GET_ITEM(res, 2));
        if (cut < 0 || (red == -1 && PyErr_Occurred())) {
            Py_DECREF(res);
            goto done;
        }
        cuts += cut;
        redups += red;
        PyObject *new_ids = PyTuple_GET_ITEM(res, 0);
        if (new_ids == Py_None) {
            Py_DECREF(res);
            kept++;
            continue;
        }
        if (!PyTuple_Check(new_ids)) {
            Py_DECREF(res);
            PyErr_SetString(PyExc_TypeError, "published_contract: new ids must be a tuple");
            goto done;
        }
        int rc = vec_splice(&a, st, k, new_ids);
        Py_DECREF(res);
        if (rc < 0)
            goto done;
    }
    out = PyList_New(a.n);
    if (out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < a.n; i++) {
        PyObject *v = PyLong_FromLongLong(a.v[i]);
        if (v == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, v);
    }
done:
    Py_XDECREF(info);
    PyMem_Free(a.v);
    Py_XDECREF(seq);
    PyBuffer_Release(&sview);
    if (out == NULL)
        return NULL;
    return Py_BuildValue("(Nnnnnnn)", out, windows, cuts, redups, kept, fallbacks, dropped);
}

static PyMethodDef module_methods[] = {
    {"expand", (PyCFunction)(void (*)(void))native_expand, METH_VARARGS | METH_KEYWORDS,
     "expand(ids, table, rng, expand_prop, blocked=None, redraw_blocked=0, slots=False)\n"
     "-> (new ids, or {position: pieces} when slots; attempts; expansions): StochasTok's\n"
     "expansion loop, draw for draw as filmorph.arms.stochastok.expand_slots."},
    {"published_contract", (PyCFunction)native_published_contract, METH_VARARGS,
     "published_contract(ids, rng, iterations, c1, c2, special, has_special, spans, info_fn,\n"
     "outcome_fn, aware_plain, aware_overlap, max_attempts) -> (new ids, windows, cuts,\n"
     "redups, kept, fallbacks, dropped): the published Patok's window loop, draw for draw as\n"
     "filmorph.arms.patok_published.PatokPublished."},
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
    if (PyType_Ready(&RngType) < 0 || PyType_Ready(&TableType) < 0)
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
    return m;
}
