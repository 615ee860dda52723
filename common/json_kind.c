/* What kind of JSON value a reader found, worded for its error messages. */
#include "common/json_kind.h"

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
