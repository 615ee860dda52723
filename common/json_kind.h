/* What kind of JSON value a reader found, worded for its error messages. */
#ifndef ZF_JSON_KIND_H
#define ZF_JSON_KIND_H

#include <cjson/cJSON.h>

/* "a string", "a number", ..., "null"; "nothing (key missing)" for NULL. */
const char *zf_json_kind(const cJSON *v);
/* Why cJSON could not parse text, for "<file>: expected JSON, found <this>": nesting deeper than cJSON's limit, or
 * a syntax error near the byte where parsing stopped (cJSON's error position, which must be the last parse's). */
const char *zf_json_syntax_error(const char *text, char *buf, size_t n);

#endif
