/*
 * JSON Lines and msgpack, straight from one to the other, for the command
 * line at bulk speed (`flume append`, `flume cat`). The forms are
 * flume.json's (views-lua/flume/json.lua, the reference): these functions
 * take the common values only and say "not mine" for everything else, so
 * the caller hands that value to flume.json, which gives the exact answer
 * or the exact error. What they do take they convert to the very value
 * flume.json would give (spec/json_fast_spec.lua compares them).
 */
#ifndef FLUME_RUNTIME_JSON_H
#define FLUME_RUNTIME_JSON_H

#include <stddef.h>

#include "buf.h"

/* Returned when a value is not one these functions take. */
#define FLUME__JSON_OTHER 1

/*
 * Appends to out the msgpack of the one JSON value in s[0..n): objects of
 * string keys, arrays, strings, int64 integers, finite floats, true and
 * false. FLUME__JSON_OTHER (out as it was) for anything else: nulls, tags
 * ("$float", "$bytes", "$map"), keys beginning with '$', deep nesting,
 * and every invalid line (flume.json then says what is wrong).
 * FLUME_ENOMEM.
 */
int flume__json_to_mp(const char *s, size_t n, flume__buf *out);

/*
 * Appends to out the JSON of the msgpack value p[0..n), as flume.json
 * writes it after flume's decoder: maps of UTF-8 string keys (sorted
 * bytewise), arrays without nil, UTF-8 strings, integers, finite floats,
 * booleans. FLUME__JSON_OTHER (out as it was) for anything else: nil,
 * maps of other keys or with a key twice, strings that are not UTF-8, a
 * key naming a tag alone, extension types, unsigned integers past int64,
 * deep nesting, bytes that are not one value. FLUME_ENOMEM.
 */
int flume__mp_to_json(const char *p, size_t n, flume__buf *out);

/* A finite float as flume's JSON writes it (the shortest of %.15g, %.16g,
 * %.17g that reads back the same, ".0" added when it has neither '.' nor
 * 'e') into s, which has room for 32 bytes; returns its length (no NUL
 * counted; none written on the fast path). */
size_t flume__json_float(char *s, double v);

#endif
