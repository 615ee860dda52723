/* What kind of JSON value a reader found, worded for its error messages. */
#include "common/json_kind.h"

#include <stdbool.h>
#include <stdio.h>

const char *zf_json_kind(const cJSON *v)
{
    if (!v) return "nothing (key missing)";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "an invalid value";
}

const char *zf_json_syntax_error(const char *text, char *buf, size_t n)
{
    int depth = 0, deepest = 0;
    bool in_string = false;
    for (const char *p = text; *p; p++) {
        if (in_string) {
            if (*p == '\\' && p[1]) p++;
            else if (*p == '"') in_string = false;
        } else if (*p == '"') {
            in_string = true;
        } else if (*p == '[' || *p == '{') {
            if (++depth > deepest) deepest = depth;
        } else if (*p == ']' || *p == '}') {
            depth--;
        }
    }
    if (deepest > CJSON_NESTING_LIMIT)
        snprintf(buf, n, "arrays or objects nested %d levels deep (at most %d)", deepest, CJSON_NESTING_LIMIT);
    else if (cJSON_GetErrorPtr() && cJSON_GetErrorPtr() >= text)
        snprintf(buf, n, "a syntax error near byte %td", cJSON_GetErrorPtr() - text);
    else
        snprintf(buf, n, "a syntax error");
    return buf;
}
