// runstate.c — see runstate.h for the contract.
#include "runstate.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

// jansson prints reals with 17 digits; 15 digits reads better and is used whenever it reads back
// as the same values.
static char *dump_json(const json_t *o)
{
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    json_t *back = s ? json_loads(s, 0, NULL) : NULL;
    if (!back || !json_equal(back, (json_t *)o)) {
        free(s);
        s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    }
    json_decref(back);
    ASSERT(s);
    size_t n = strlen(s);
    s = xrealloc(s, n + 2);
    s[n] = '\n';
    s[n + 1] = '\0';
    return s;
}

void json_write_file(const char *dir, const char *name, const json_t *o)
{
    char *path = path_join(dir, name), *text = dump_json(o);
    atomic_write_file(path, text, strlen(text));
    free(text);
    free(path);
}

void run_state_save(const char *dir, const struct safetensors_entry *e, size_t n, long long step,
                    const json_t *state)
{
    ASSERT(step >= 0);
    make_dirs(dir);
    char sstep[32];
    snprintf(sstep, sizeof sstep, "%lld", step);
    const char *meta[] = {"srlm_step", sstep, NULL};
    char *path = path_join(dir, "optimizer.safetensors");
    safetensors_write(path, e, n, SAFETENSORS_F32, meta);
    json_t *ts = state ? json_deep_copy(state) : json_object();
    json_object_set_new(ts, "step", json_integer(step));
    json_write_file(dir, "trainer_state.json", ts);
    json_decref(ts);
    free(path);
}

// trainer_state.json's object and its "step"
static json_t *read_trainer_state(const char *path, long long *step)
{
    json_t *ts = json_read_file(path);
    json_t *js = json_object_get(ts, "step");
    if (!json_is_integer(js) || json_integer_value(js) < 0)
        die(EX_DATAERR, "%s: \"step\" missing or not a non-negative integer", path);
    *step = json_integer_value(js);
    return ts;
}

json_t *run_state_load(const char *dir, const struct safetensors_entry *e, size_t n,
                       long long expect_step, const char *owner)
{
    char *tpath = path_join(dir, "trainer_state.json"), *opath = path_join(dir, "optimizer.safetensors");
    long long step;
    json_t *ts = read_trainer_state(tpath, &step);
    struct safetensors st;
    safetensors_open(&st, opath);
    long long ostep = safetensors_step(&st, opath);
    if (ostep != step)
        die(EX_DATAERR, "%s: from step %lld, but %s is from step %lld (a run stopped while saving?)",
            opath, ostep, tpath, step);
    if (expect_step >= 0 && expect_step != step)
        die(EX_DATAERR, "%s: run state from step %lld, but the %s checkpoint is from step %lld",
            dir, step, owner, expect_step);
    for (size_t k = 0; k < n; k++) {
        const struct safetensors_tensor *s = safetensors_find(&st, e[k].name);
        if (!s) die(EX_DATAERR, "%s: tensor %s missing", opath, e[k].name);
        char needs[32];
        snprintf(needs, sizeof needs, "the %s", owner);
        safetensors_check_shape(s, e[k].ndim, e[k].shape, opath, needs);
        safetensors_read_f32(s, (float *)e[k].data);
    }
    if (st.n != n)   // every entry was found, so some tensor of the file is not an entry
        for (size_t i = 0; i < st.n; i++) {
            size_t k = 0;
            while (k < n && strcmp(e[k].name, st.tensors[i].name)) k++;
            if (k == n) die(EX_DATAERR, "%s: unexpected tensor %s", opath, st.tensors[i].name);
        }
    safetensors_close(&st);
    free(tpath);
    free(opath);
    return ts;
}
