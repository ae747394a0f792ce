// to-json — prints a srlm record stream as JSON lines, one record per line, to look at any stage
// and to edit it with jq (docs/stream-tools.md).
//
// stdin (or FILE): a srlm stream — header, data records, end record (docs/stream.md); with --raw,
//   any sequence of msgpack maps, unframed.
// stdout: one compact JSON object per record, in order, the header and the end record included
//   (unless --no-frame), so `to-json | from-json` gives back the same bytes. Tensors become
//   {dtype, shape, data:[numbers]}; bin, ext, integers above 2^63-1 and NaN/Inf use the encodings
//   documented in common/json.h.
// files: reads FILE when given ("-" or none: stdin); writes none.
//
// --csv: a srlm.metrics stream (sft-step, rl-step) as CSV instead: a header row naming every
// scalar field of the "metrics" records (nested maps flattened as "outer/inner"), then one row
// per "metrics" record. The whole stream is read before anything is printed, because a later
// record may add a field (rl-step's sample_model_xxh3); see docs/stream-tools.md.
//
// The framing is checked as every srlm reader checks it, but records are printed as they
// arrive: a stream that was cut off prints every whole record it had, then exits 65 ("missing
// end record"), and since no end line was printed, a from-json downstream fails as well. The end
// record is printed only once the input is known to stop right after it.
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "rec.h"
#include "util.h"

struct opts {
    size_t max_bytes;
    bool raw;                  // any msgpack maps, no framing checks
    bool frame;                // print the header and end lines (--no-frame clears it)
    int json_flags;            // JSON_MP_DECODE_TENSORS unless --no-decode
    bool csv;                  // the metrics records as CSV
};

static void usage(void)
{
    printf("usage: to-json [-hV] [--no-decode] [--no-frame] [--raw] [--max-record-bytes n] [file]\n"
           "       to-json --csv [--max-record-bytes n] [file]\n"
           "\n"
           "Prints a srlm record stream (file, or stdin when none or \"-\") as JSON lines: one object\n"
           "per record, header and end record included, so that `to-json | jq -c ... | from-json`\n"
           "edits a stream.\n"
           "\n"
           "  -h, --help                 print this help and exit\n"
           "  -V, --version              print the version and exit\n"
           "      --no-decode            print tensor data as {\"bin_base64\": ...} instead of numbers\n"
           "      --no-frame             print the data records only, not the header and end lines\n"
           "                             (feed the result to `from-json --frame SCHEMA`)\n"
           "      --raw                  read any sequence of msgpack maps, without srlm framing\n"
           "      --max-record-bytes n   refuse records larger than n bytes (default 64M)\n"
           "      --csv                  a metrics stream (sft-step, rl-step) as CSV: a header row with\n"
           "                             every field of its \"metrics\" records (nested maps as a/b), one\n"
           "                             row per record (RFC 4180 quoting); printed once the whole\n"
           "                             stream has been read\n"
           "\n"
           "Exit status: 0 ok, 64 usage, 65 malformed, truncated or unframed stream (or --csv on another\n"
           "schema), 66 missing file or a directory, 74 I/O error. See docs/stream-tools.md.\n");
}

// Leaves optind at the FILE operand, if any (main opens it).
static struct opts parse_args(int argc, char **argv)
{
    enum { OPT_MAX_BYTES = 256, OPT_RAW, OPT_NO_FRAME, OPT_NO_DECODE, OPT_CSV };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "max-record-bytes", required_argument, NULL, OPT_MAX_BYTES },
        { "raw", no_argument, NULL, OPT_RAW },
        { "no-frame", no_argument, NULL, OPT_NO_FRAME },
        { "no-decode", no_argument, NULL, OPT_NO_DECODE },
        { "csv", no_argument, NULL, OPT_CSV },
        { NULL, 0, NULL, 0 },
    };
    struct opts o = { .max_bytes = REC_DEFAULT_MAX_BYTES, .frame = true, .json_flags = JSON_MP_DECODE_TENSORS };
    int c;
    opterr = 0;                               // our own messages, with the tool: prefix
    while ((c = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(); tool_exit(0);
        case 'V': printf("%s %s\n", progname, VERSION); tool_exit(0);
        case OPT_MAX_BYTES: o.max_bytes = parse_size(optarg, 16, (size_t)1 << 32, "--max-record-bytes"); break;
        case OPT_RAW: o.raw = true; break;
        case OPT_NO_FRAME: o.frame = false; break;
        case OPT_NO_DECODE: o.json_flags = 0; break;
        case OPT_CSV: o.csv = true; break;
        case ':': usage_error("option '%s' needs a value", argv[optind - 1]);
        default: usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (o.csv && (o.raw || !o.frame || !o.json_flags))
        usage_error("--csv does not go with --raw, --no-frame or --no-decode");
    return o;
}

// ---------------------------------------------------------------------------------------------

static _Noreturn void fail_at(const struct rec_reader *r, const char *msg)
{
    // r->nrec counts the record just returned, which is the one at fault.
    die(EX_DATAERR, "%s: record %zu: %s", r->name, r->nrec, msg);
}

static bool kind_is(const msgpack_object *rec, const char *kind)
{
    const msgpack_object *k = rec_get(rec, "kind");
    return k && rec_key_is(k, kind);
}

static json_t *convert(const struct rec_reader *r, const msgpack_object *rec, const struct opts *o)
{
    char err[600];
    json_t *j = json_from_msgpack_ex(rec, o->json_flags, err, sizeof err);
    if (!j) fail_at(r, err);
    return j;
}

// Writes a line and flushes it, so a slow upstream's records show as they come.
static void emit(json_t *j)
{
    if (json_write_line(stdout, j) != 0 || fflush(stdout) != 0) die(EX_IOERR, "write <stdout>:");
    json_decref(j);
}

static void print_raw(struct rec_reader *r, const struct opts *o)
{
    msgpack_object rec;
    while (rec_reader_next(r, &rec)) emit(convert(r, &rec, o));
}

static void check_end(const struct rec_reader *r, const msgpack_object *end, size_t ndata)
{
    const msgpack_object *n = rec_get(end, "records");
    char msg[200];
    if (!n || n->type != MSGPACK_OBJECT_POSITIVE_INTEGER) fail_at(r, "end record: field \"records\": missing or not a count");
    if (n->via.u64 != ndata) {
        snprintf(msg, sizeof msg, "end record says %llu records, but %zu arrived", (unsigned long long)n->via.u64, ndata);
        fail_at(r, msg);
    }
}

// ---------------------------------------------------------------------------------------------
// --csv: the "metrics" records as a table. Columns are the records' scalar fields in the order
// they were first seen ("kind" left out, nested maps flattened as "outer/inner", arrays skipped);
// a row holds the cells of its record (NULL: the record has no such field).

struct row {
    char **cell;
    size_t n;
};

struct table {
    char **cols;
    size_t ncols;
    struct row *rows;
    size_t nrows;
};

static size_t table_col(struct table *t, const char *name)
{
    for (size_t j = 0; j < t->ncols; j++)
        if (!strcmp(t->cols[j], name)) return j;
    t->cols = xrealloc(t->cols, (t->ncols + 1) * sizeof *t->cols);
    t->cols[t->ncols] = xstrdup(name);
    return t->ncols++;
}

static void row_set(struct row *w, size_t j, char *text)
{
    if (j >= w->n) {
        w->cell = xrealloc(w->cell, (j + 1) * sizeof *w->cell);
        memset(w->cell + w->n, 0, (j + 1 - w->n) * sizeof *w->cell);
        w->n = j + 1;
    }
    free(w->cell[j]);
    w->cell[j] = text;
}

// A number with the text to-json prints for it (the fewest digits that read back the same).
static char *number_text(const json_t *v)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    if (!m) die(EX_OSERR, "open_memstream:");
    if (json_write_line(m, v) != 0 || fclose(m) != 0 || n == 0) die(EX_OSERR, "open_memstream:");
    buf[n - 1] = '\0';                      // the line's '\n'
    return buf;
}

// A scalar's cell: a string as it is, a number as to-json prints it, true/false, "" for null;
// {"uint64": "<digits>"} (an integer above 2^63-1) as its digits. NULL for an array.
static char *cell_text(const json_t *v)
{
    const json_t *u = json_is_object(v) && json_object_size(v) == 1 ? json_object_get(v, "uint64") : NULL;
    if (json_is_string(u)) return xstrdup(json_string_value(u));
    switch (json_typeof(v)) {
    case JSON_STRING: return xstrdup(json_string_value(v));
    case JSON_INTEGER: case JSON_REAL: return number_text(v);
    case JSON_TRUE: return xstrdup("true");
    case JSON_FALSE: return xstrdup("false");
    case JSON_NULL: return xstrdup("");
    default: return NULL;
    }
}

static void row_add_fields(struct table *t, struct row *w, const char *prefix, json_t *obj)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (!prefix && !strcmp(key, "kind")) continue;
        char *name = prefix ? xmalloc(strlen(prefix) + strlen(key) + 2) : xstrdup(key);
        if (prefix) sprintf(name, "%s/%s", prefix, key);
        char *text = cell_text(v);
        if (text) row_set(w, table_col(t, name), text);
        else if (json_is_object(v)) row_add_fields(t, w, name, v);
        free(name);
    }
}

static void table_add(struct table *t, const struct rec_reader *r, const msgpack_object *rec, const struct opts *o)
{
    if (!kind_is(rec, "metrics")) return;
    json_t *j = convert(r, rec, o);
    t->rows = xrealloc(t->rows, (t->nrows + 1) * sizeof *t->rows);
    struct row *w = &t->rows[t->nrows++];
    *w = (struct row){0};
    row_add_fields(t, w, NULL, j);
    json_decref(j);
}


static void table_print(const struct table *t)
{
    for (size_t j = 0; j < t->ncols; j++) {
        if (j) putchar(',');
        csv_field(stdout, t->cols[j]);
    }
    if (t->ncols) putchar('\n');
    for (size_t i = 0; i < t->nrows; i++) {
        const struct row *w = &t->rows[i];
        for (size_t j = 0; j < t->ncols; j++) {
            if (j) putchar(',');
            if (j < w->n && w->cell[j]) csv_field(stdout, w->cell[j]);
        }
        putchar('\n');
    }
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->nrows; i++) {
        for (size_t j = 0; j < t->rows[i].n; j++) free(t->rows[i].cell[j]);
        free(t->rows[i].cell);
    }
    for (size_t j = 0; j < t->ncols; j++) free(t->cols[j]);
    free(t->rows);
    free(t->cols);
}

static void check_metrics_schema(const struct rec_reader *r, const msgpack_object *hdr)
{
    const msgpack_object *s = rec_get(hdr, "schema");
    if (s && rec_key_is(s, "srlm.metrics")) return;
    char msg[300];
    if (s && s->type == MSGPACK_OBJECT_STR)
        snprintf(msg, sizeof msg, "--csv reads a srlm.metrics stream (sft-step, rl-step), not %.*s",
                 (int)(s->via.str.size > 100 ? 100 : s->via.str.size), s->via.str.ptr);
    else
        snprintf(msg, sizeof msg, "--csv reads a srlm.metrics stream, but the header has no schema string");
    fail_at(r, msg);
}

// ---------------------------------------------------------------------------------------------

// Reads a framed stream; prints its records as JSON lines, or with --csv gathers the metrics
// records into t and prints the table once the end record has been checked.
static void print_framed(struct rec_reader *r, const struct opts *o, struct table *t)
{
    msgpack_object rec;
    if (!rec_reader_next(r, &rec))
        die(EX_DATAERR, "%s: empty input: expected a srlm stream (--raw reads plain msgpack)", r->name);
    if (!kind_is(&rec, "header"))
        fail_at(r, "expected a header record first (kind \"header\"); --raw reads msgpack without srlm framing");
    if (o->csv) check_metrics_schema(r, &rec);
    else if (o->frame) emit(convert(r, &rec, o));
    size_t ndata = 0;
    for (;;) {
        if (!rec_reader_next(r, &rec))
            die(EX_DATAERR, "%s: missing end record after %zu records: the stream was cut off (did the upstream tool fail?)",
                r->name, ndata);
        if (kind_is(&rec, "header")) fail_at(r, "a second header inside the stream (concatenated streams are not supported)");
        if (kind_is(&rec, "end")) break;
        if (o->csv) table_add(t, r, &rec, o);
        else emit(convert(r, &rec, o));
        ndata++;
    }
    check_end(r, &rec, ndata);
    json_t *end = convert(r, &rec, o);     // the next read frees rec
    if (rec_reader_next(r, &rec)) fail_at(r, "data after the end record");
    if (o->frame && !o->csv) emit(end);
    else json_decref(end);
    if (o->csv && t->nrows == 0)
        log_warn("%s: no \"metrics\" records, nothing to print (for evaluate's \"eval\" record: evaluate --csv)", r->name);
    if (o->csv) table_print(t);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    struct opts o = parse_args(argc, argv);
    const char *name;
    FILE *fp = open_input_operand(argc, argv, optind, &name);
    struct rec_reader r;
    rec_reader_open(&r, fp, name, o.max_bytes);
    struct table t = {0};
    if (o.raw) print_raw(&r, &o);
    else print_framed(&r, &o, &t);
    table_free(&t);
    rec_reader_close(&r);
    close_input(fp);
    tool_exit(0);
}
