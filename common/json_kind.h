/* What kind of JSON value a reader found, worded for its error messages. */
#ifndef ZF_JSON_KIND_H
#define ZF_JSON_KIND_H

#include <cjson/cJSON.h>

/* "a string", "a number", ..., "null"; "nothing (key missing)" for NULL. */
const char *zf_json_kind(const cJSON *v);

#endif
