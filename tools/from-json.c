// from-json — packs JSON lines into a srlm record stream: the reverse of to-json, and the way to
// write a pipeline stage in jq, Python or anything else that prints JSON (docs/stream-tools.md).
//
// stdin (or FILE): JSON lines, one object per line (blank lines skipped); gzip-compressed input
//   (found by its magic bytes, not its name) is read through zlib.
//   - By default, a whole stream as to-json prints it: a header line first ({"kind":"header",...}),
//     data records, and an end line ({"kind":"end",...}) last. The header is packed unchanged.
//     The end record's "records" count is rewritten to the number of data lines actually read, so
//     a jq filter may drop or add records; but the end line itself is required, since its absence
//     means the stream was cut off upstream (to-json prints none when its input was truncated).
//   - With --frame SCHEMA, plain JSON objects (no header or end lines): from-json writes a header
//     {kind:"header", schema:SCHEMA, schema_version:1, producer:{name:"from-json",...}} and an end
//     record with the count.
//   Every data record needs a "kind" string; --kind KIND gives one (as the first key) to records
//   that lack it.
// stdout: the msgpack stream, flushed after each record. Refuses to write to a terminal.
// files: reads FILE when given; writes none.
// JSON values map to msgpack as common/json.h documents (tensors, bin, ext, big ints, NaN/Inf).
#include <getopt.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "rec.h"
#include "util.h"

struct opts {
    const char *file;          // NULL or "-": stdin
    const char *frame;         // --frame SCHEMA: wrap plain objects
    const char *kind;          // --kind KIND: default kind for records without one
    size_t max_line;
};

static void usage(void)
{
    printf("usage: from-json [-hV] [--frame schema] [--kind kind] [--max-line-bytes n] [file]\n"
           "\n"
           "Packs JSON lines (file, or stdin when none or \"-\"; gzip-compressed input is read through\n"
           "zlib) into a srlm record stream on stdout.\n"
           "By default the input is a whole stream as to-json prints it (a header line first, an end\n"
           "line last); the end record's count is rewritten to the records actually read.\n"
           "\n"
           "  -h, --help               print this help and exit\n"
           "  -V, --version            print the version and exit\n"
           "      --frame schema       the input is plain JSON objects: add a header with this schema\n"
           "                           (e.g. srlm.examples) and an end record\n"
           "      --kind kind          give records without a \"kind\" field this kind\n"
           "      --max-line-bytes n   refuse input lines longer than n bytes (default 64M)\n"
           "\n"
           "Exit status: 0 ok, 64 usage, 65 bad input line (with its number), 66 missing file,\n"
           "74 I/O error. See docs/stream-tools.md.\n");
}

static struct opts parse_args(int argc, char **argv)
{
    enum { OPT_FRAME = 256, OPT_KIND, OPT_MAX_LINE };
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "frame", required_argument, NULL, OPT_FRAME },
        { "kind", required_argument, NULL, OPT_KIND },
        { "max-line-bytes", required_argument, NULL, OPT_MAX_LINE },
        { NULL, 0, NULL, 0 },
    };
    struct opts o = { .max_line = JSONL_DEFAULT_MAX_LINE };
    int c;
    opterr = 0;                               // our own messages, with the tool: prefix
    while ((c = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(); tool_exit(0);
        case 'V': printf("%s %s\n", progname, VERSION); tool_exit(0);
        case OPT_FRAME: o.frame = optarg; break;
        case OPT_KIND: o.kind = optarg; break;
        case OPT_MAX_LINE: o.max_line = parse_size(optarg, 2, (size_t)1 << 32, "--max-line-bytes"); break;
        case ':': usage_error("option '%s' needs a value", argv[optind - 1]);
        default: usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (o.frame && !*o.frame) usage_error("--frame: the schema name is empty");
    if (o.kind && (!*o.kind || !strcmp(o.kind, "header") || !strcmp(o.kind, "end")))
        usage_error("--kind: \"%s\" cannot be a data record's kind", o.kind);
    if (argc - optind > 1) usage_error("too many operands (one input file at most)");
    if (optind < argc) o.file = argv[optind];
    return o;
}

// ---------------------------------------------------------------------------------------------

static bool kind_is(const json_t *rec, const char *kind)
{
    const json_t *k = json_object_get(rec, "kind");
    return json_is_string(k) && strcmp(json_string_value(k), kind) == 0;
}

// Packs one line's object as a map (never as a special form, even if its keys look like one).
static void pack_line(const struct jsonl_reader *jr, struct rec_writer *w, const json_t *v)
{
    char err[600];
    if (!json_pack_check_members(v, err, sizeof err)) jsonl_fail(jr, "%s", err);
    rec_pack_map(w, (uint32_t)json_object_size(v));
    json_pack_members(w, v);
}

static void pack_data(const struct jsonl_reader *jr, struct rec_writer *w, json_t *v, const struct opts *o)
{
    if (!json_object_get(v, "kind") && o->kind) {
        json_t *k = json_pack("{s:s}", "kind", o->kind);   // jansson's json_pack, not ours
        json_object_update(k, v);
        json_object_clear(v);
        json_object_update(v, k);
        json_decref(k);
    }
    if (!json_is_string(json_object_get(v, "kind")))
        jsonl_fail(jr, "record has no \"kind\" string (every srlm record needs one; see --kind)");
    char err[600];
    if (!json_pack_check_members(v, err, sizeof err)) jsonl_fail(jr, "%s", err);
    rec_record_begin(w, (uint32_t)json_object_size(v));
    json_pack_members(w, v);
    rec_record_end(w);
    rec_flush(w);
}

static void pack_framed(struct jsonl_reader *jr, struct rec_writer *w, const struct opts *o)
{
    json_t *v = jsonl_next(jr), *end = NULL;
    if (!v) die(EX_DATAERR, "%s: empty input: expected a header line first (as to-json prints it), or use --frame SCHEMA", jr->name);
    if (!kind_is(v, "header"))
        jsonl_fail(jr, "expected a header record ({\"kind\":\"header\",...}) first; "
                       "for plain JSON objects use --frame SCHEMA");
    pack_line(jr, w, v);
    rec_flush(w);
    json_decref(v);
    while ((v = jsonl_next(jr))) {
        if (end) jsonl_fail(jr, "a record after the end record");
        if (kind_is(v, "header")) jsonl_fail(jr, "a second header (to merge streams, drop the inner header and end lines)");
        if (kind_is(v, "end")) { end = v; continue; }
        pack_data(jr, w, v, o);
        json_decref(v);
    }
    if (!end)
        die(EX_DATAERR, "%s: missing end record: the input stops after line %zu without a {\"kind\":\"end\"} line "
            "(was the stream cut off upstream?)", jr->name, jr->line);
    // jq may have dropped or added records: the count is what was written.
    json_object_set_new(end, "records", json_integer((json_int_t)w->ndata));
    pack_line(jr, w, end);
    rec_flush(w);
    json_decref(end);
}

static void pack_plain(struct jsonl_reader *jr, struct rec_writer *w, const struct opts *o)
{
    rec_write_header(w, o->frame, NULL, 0, NULL, NULL);
    json_t *v;
    while ((v = jsonl_next(jr))) {
        if (kind_is(v, "header") || kind_is(v, "end"))
            jsonl_fail(jr, "a \"%s\" record: the input is already a framed stream; drop --frame",
                       json_string_value(json_object_get(v, "kind")));
        pack_data(jr, w, v, o);
        json_decref(v);
    }
    rec_write_end(w);
}

int main(int argc, char **argv)
{
    tool_init(argv[0]);
    struct opts o = parse_args(argc, argv);
    const char *name;
    FILE *fp = open_input_path(o.file, &name);
    FILE *in = jsonl_gunzip(fp, name);
    struct jsonl_reader jr;
    jsonl_open(&jr, in, name, o.max_line);
    struct rec_writer w;
    rec_writer_open(&w, stdout);
    if (o.frame) pack_plain(&jr, &w, &o);
    else pack_framed(&jr, &w, &o);
    jsonl_close(&jr);
    jsonl_gunzip_close(in, fp);
    close_input(fp);
    tool_exit(0);
}
