// to-json — prints a srlm record stream as JSON lines, one record per line, to look at any stage
// and to edit it with jq (docs/stream-tools.md).
//
// stdin (or FILE): a srlm stream — header, data records, end record (docs/stream.md); with --raw,
//   any sequence of msgpack maps, unframed.
// stdout: one compact JSON object per record, in order, the header and the end record included
//   (unless --no-frame), so `to-json | from-json` gives back the same bytes. Tensors become
//   {dtype, shape, data:[numbers]}; bin, ext, integers above 2^63-1 and NaN/Inf use the encodings
//   documented in common/json.h.
// files: reads FILE when given; writes none.
//
// The framing is checked as every srlm reader checks it, but records are printed as they
// arrive: a stream that was cut off prints every whole record it had, then exits 65 ("missing
// end record"), and since no end line was printed, a from-json downstream fails as well. The end
// record is printed only once the input is known to stop right after it.
#include <getopt.h>
#include <string.h>

#include "json.h"
#include "rec.h"
#include "util.h"

struct opts {
    const char *file;          // NULL or "-": stdin
    size_t max_bytes;
    bool raw;                  // any msgpack maps, no framing checks
    bool frame;                // print the header and end lines (--no-frame clears it)
    int json_flags;            // JSON_MP_DECODE_TENSORS unless --no-decode
};

static void usage(void)
{
    printf("usage: to-json [-hV] [--no-decode] [--no-frame] [--raw] [--max-record-bytes n] [file]\n"
           "\n"
           "Prints a srlm record stream (stdin, or file) as JSON lines: one object per record,\n"
           "header and end record included, so that `to-json | jq -c ... | from-json` edits a stream.\n"
           "\n"
           "  -h, --help                 print this help and exit\n"
           "  -V, --version              print the version and exit\n"
           "      --no-decode            print tensor data as {\"bin_base64\": ...} instead of numbers\n"
           "      --no-frame             print the data records only, not the header and end lines\n"
           "                             (feed the result to `from-json --frame SCHEMA`)\n"
           "      --raw                  read any sequence of msgpack maps, without srlm framing\n"
           "      --max-record-bytes n   refuse records larger than n bytes (default 64M)\n"
           "\n"
           "Exit status: 0 ok, 64 usage, 65 malformed, truncated or unframed stream, 66 missing file,\n"
           "74 I/O error. See docs/stream-tools.md.\n");
}

static struct opts parse_args(int argc, char **argv)
{
    enum { OPT_MAX_BYTES = 256, OPT_RAW, OPT_NO_FRAME, OPT_NO_DECODE };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "max-record-bytes", required_argument, NULL, OPT_MAX_BYTES },
        { "raw", no_argument, NULL, OPT_RAW },
        { "no-frame", no_argument, NULL, OPT_NO_FRAME },
        { "no-decode", no_argument, NULL, OPT_NO_DECODE },
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
        case ':': usage_error("option '%s' needs a value", argv[optind - 1]);
        default: usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind > 1) usage_error("too many operands (one input file at most)");
    if (optind < argc) o.file = argv[optind];
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

static void print_framed(struct rec_reader *r, const struct opts *o)
{
    msgpack_object rec;
    if (!rec_reader_next(r, &rec))
        die(EX_DATAERR, "%s: empty input: expected a srlm stream (--raw reads plain msgpack)", r->name);
    if (!kind_is(&rec, "header"))
        fail_at(r, "expected a header record first (kind \"header\"); --raw reads msgpack without srlm framing");
    if (o->frame) emit(convert(r, &rec, o));
    size_t ndata = 0;
    for (;;) {
        if (!rec_reader_next(r, &rec))
            die(EX_DATAERR, "%s: missing end record after %zu records: the stream was cut off (did the upstream tool fail?)",
                r->name, ndata);
        if (kind_is(&rec, "header")) fail_at(r, "a second header inside the stream (concatenated streams are not supported)");
        if (kind_is(&rec, "end")) break;
        emit(convert(r, &rec, o));
        ndata++;
    }
    check_end(r, &rec, ndata);
    json_t *end = convert(r, &rec, o);     // the next read frees rec
    if (rec_reader_next(r, &rec)) fail_at(r, "data after the end record");
    if (o->frame) emit(end);
    else json_decref(end);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    struct opts o = parse_args(argc, argv);
    const char *name;
    FILE *fp = open_input(o.file, &name);
    struct rec_reader r;
    rec_reader_open(&r, fp, name, o.max_bytes);
    if (o.raw) print_raw(&r, &o);
    else print_framed(&r, &o);
    rec_reader_close(&r);
    close_input(fp);
    tool_exit(0);
}
