/*
 * The fuzz targets without libFuzzer: a main() that runs a target's
 * LLVMFuzzerTestOneInput on every file of its corpus, then on a fixed
 * number of pseudo-random mutations of them (seeded, so every run tries the
 * same inputs and CTest stays repeatable). Any compiler builds it; under
 * the sanitized build it finds what the sanitizers see too.
 *
 *   replay_<target> [--save K FILE] DIR_OR_FILE... [MUTATIONS [SEED]]
 *
 * A failing input is named on stderr as it dies; --save K FILE
 * writes mutation K to FILE instead of running anything, to reproduce it
 * (`replay_<target> FILE`) or add it to the corpus. Mutating stops early
 * after FUZZ_REPLAY_SECONDS (default 20) so a slow build stays bounded.
 */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The sanitizers' hook for a last word before they end the process; absent
 * (NULL) in a build without them. */
extern void __sanitizer_set_death_callback(void (*cb)(void))
    __attribute__((weak));

/* Longest input a mutation makes. */
#define REPLAY_MAX_INPUT 65536

typedef struct input {
  uint8_t *data; /* the bytes */
  size_t size;   /* their count */
  char *name;    /* the file they came from */
} input;

static input *inputs;  /* the corpus, in name order */
static size_t ninputs; /* its size */

static uint64_t rng; /* xorshift64* state */

/* What is running, for the last word: a corpus file's index, or a
 * mutation's number. */
static volatile long long now_corpus = -1, now_mutation = -1;
static uint64_t now_seed; /* the seed of the mutations */

/* Names the input that is failing (async-signal-safe enough: a fixed
 * buffer and write). */
static void last_word(void) {
  char msg[600];
  int n;
  if (now_mutation >= 0)
    n = snprintf(msg, sizeof msg,
                 "\nreplay: failed on mutation %lld (seed %llu): "
                 "--save %lld FILE writes it\n",
                 now_mutation, (unsigned long long)now_seed, now_mutation);
  else if (now_corpus >= 0)
    n = snprintf(msg, sizeof msg, "\nreplay: failed on %s\n",
                 inputs[now_corpus].name);
  else
    return;
  if (n > 0 && fwrite(msg, 1, (size_t)n, stderr)) fflush(stderr);
}

static void on_signal(int sig) {
  last_word();
  signal(sig, SIG_DFL);
  raise(sig);
}

static uint64_t next(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * UINT64_C(2685821657736338717);
}

static size_t below(size_t n) { return n ? (size_t)(next() % n) : 0; }

static void die(const char *what, const char *name) {
  fprintf(stderr, "replay: %s: %s\n", what, name);
  exit(2);
}

static void add_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) die("cannot open", path);
  input in = {NULL, 0, strdup(path)};
  size_t cap = 0;
  for (;;) {
    if (in.size == cap) {
      cap = cap ? 2 * cap : 4096;
      if ((in.data = realloc(in.data, cap)) == NULL) die("out of memory", path);
    }
    size_t got = fread(in.data + in.size, 1, cap - in.size, f);
    if (got == 0) break;
    in.size += got;
  }
  fclose(f);
  inputs = realloc(inputs, (ninputs + 1) * sizeof *inputs);
  if (inputs == NULL) die("out of memory", path);
  inputs[ninputs++] = in;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds a file, or every file of a folder in name order. */
static void add_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) die("no such file or folder", path);
  if (!S_ISDIR(st.st_mode)) {
    add_file(path);
    return;
  }
  DIR *d = opendir(path);
  if (d == NULL) die("cannot read", path);
  char **names = NULL;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    names = realloc(names, (n + 1) * sizeof *names);
    size_t len = strlen(path) + strlen(e->d_name) + 2;
    if (names == NULL || (names[n] = malloc(len)) == NULL)
      die("out of memory", path);
    snprintf(names[n++], len, "%s/%s", path, e->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof *names, by_name);
  for (size_t i = 0; i < n; i++) {
    add_file(names[i]);
    free(names[i]);
  }
  free(names);
}

/* Bytes that sit on edges of the formats: tags, terminators, escapes,
 * sign bits, msgpack and JSON structure. */
static const uint8_t special[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0x10,
                                  0x11, 0x20, 0x30, 0x50, 0xc0, 0xc1, 0xd9,
                                  0xdc, 0xde, '"',  '\\', '[',  '{',  '}',
                                  ']',  ',',  ':',  'e',  '-',  '.',  'u'};

/* One random edit of b[0..*n) (capacity REPLAY_MAX_INPUT). */
static void mutate_once(uint8_t *b, size_t *n) {
  size_t at = below(*n + 1);
  switch (next() % 9) {
  case 0: /* flip a bit */
    if (*n) b[below(*n)] ^= (uint8_t)(1u << below(8));
    break;
  case 1: /* a random byte */
    if (*n) b[below(*n)] = (uint8_t)next();
    break;
  case 2: /* an edge byte */
    if (*n) b[below(*n)] = special[below(sizeof special)];
    break;
  case 3: /* insert a byte */
    if (*n < REPLAY_MAX_INPUT) {
      memmove(b + at + 1, b + at, *n - at);
      b[at] = (uint8_t)(next() & 1 ? next() : special[below(sizeof special)]);
      ++*n;
    }
    break;
  case 4: { /* delete a run */
    size_t len = below(*n - at + 1);
    if (len > 16) len = 1 + len % 16;
    memmove(b + at, b + at + len, *n - at - len);
    *n -= len;
    break;
  }
  case 5: { /* repeat a run many times: long strings, deep nesting */
    if (*n == 0) break;
    size_t from = below(*n), len = 1 + below(*n - from < 8 ? *n - from : 8);
    size_t times = 1 + below(next() & 1 ? 8 : 700);
    if (*n + len * times > REPLAY_MAX_INPUT)
      times = (REPLAY_MAX_INPUT - *n) / len;
    uint8_t run[8];
    memcpy(run, b + from, len);
    memmove(b + at + len * times, b + at, *n - at);
    for (size_t i = 0; i < times; i++)
      memcpy(b + at + i * len, run, len);
    *n += len * times;
    break;
  }
  case 6: { /* splice in part of another input */
    const input *o = &inputs[below(ninputs)];
    if (o->size == 0) break;
    size_t from = below(o->size), len = 1 + below(o->size - from);
    if (*n + len > REPLAY_MAX_INPUT) len = REPLAY_MAX_INPUT - *n;
    memmove(b + at + len, b + at, *n - at);
    memcpy(b + at, o->data + from, len);
    *n += len;
    break;
  }
  case 7: /* cut the end */
    *n = at;
    break;
  default: { /* an 8-byte number, big-endian, near an edge */
    if (*n < 8) break;
    uint64_t x = next() & 1 ? (uint64_t)1 << below(64) : next();
    x += (uint64_t)(int64_t)(below(5) - 2);
    size_t p = below(*n - 7);
    for (int i = 0; i < 8; i++)
      b[p + i] = (uint8_t)(x >> (56 - 8 * i));
    break;
  }
  }
}

/* Mutation k of the corpus, into b; returns its size. The generator is
 * reseeded from (seed, k), so any one mutation can be made alone. */
static size_t make_mutation(uint64_t seed, uint64_t k, uint8_t *b) {
  rng = (seed ^ (k + 1) * UINT64_C(0x9e3779b97f4a7c15)) | 1;
  for (int i = 0; i < 4; i++)
    next();
  const input *base = &inputs[k % ninputs];
  size_t n = base->size;
  memcpy(b, base->data, n);
  int edits = 1 + (int)below(6);
  for (int i = 0; i < edits; i++)
    mutate_once(b, &n);
  return n;
}

int main(int argc, char **argv) {
  const char *save = NULL;
  uint64_t save_k = 0;
  int i = 1;
  if (argc > 3 && strcmp(argv[1], "--save") == 0) {
    save_k = strtoull(argv[2], NULL, 10);
    save = argv[3];
    i = 4;
  }
  /* Paths, then optionally the mutation count and the seed. */
  int last = argc;
  char *end;
  uint64_t mutations = 0, seed = 1;
  if (last - i >= 2 && (strtoull(argv[last - 1], &end, 10), *end == '\0') &&
      (strtoull(argv[last - 2], &end, 10), *end == '\0')) {
    mutations = strtoull(argv[last - 2], NULL, 10);
    seed = strtoull(argv[last - 1], NULL, 10);
    last -= 2;
  } else if (last - i >= 2 &&
             (strtoull(argv[last - 1], &end, 10), *end == '\0')) {
    mutations = strtoull(argv[last - 1], NULL, 10);
    last -= 1;
  }
  for (; i < last; i++)
    add_path(argv[i]);
  if (ninputs == 0) die("no inputs", "give a corpus folder or files");

  uint8_t *b = malloc(REPLAY_MAX_INPUT);
  if (b == NULL) die("out of memory", "mutation buffer");
  if (save) {
    size_t n = make_mutation(seed, save_k, b);
    FILE *f = fopen(save, "wb");
    if (f == NULL || fwrite(b, 1, n, f) != n || fclose(f) != 0)
      die("cannot write", save);
    printf("replay: mutation %llu (%zu bytes) saved to %s\n",
           (unsigned long long)save_k, n, save);
    return 0;
  }

  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(last_word);
  signal(SIGABRT, on_signal);
  signal(SIGSEGV, on_signal);
  signal(SIGBUS, on_signal);
  signal(SIGFPE, on_signal);
  now_seed = seed;
  for (size_t k = 0; k < ninputs; k++) {
    now_corpus = (long long)k;
    /* A copy of exactly its size, so ASan sees any read past the end. */
    uint8_t *copy = malloc(inputs[k].size ? inputs[k].size : 1);
    if (copy == NULL) die("out of memory", "input copy");
    memcpy(copy, inputs[k].data, inputs[k].size);
    LLVMFuzzerTestOneInput(copy, inputs[k].size);
    free(copy);
  }

  const char *env = getenv("FUZZ_REPLAY_SECONDS");
  double budget = env ? atof(env) : 20;
  clock_t start = clock();
  uint64_t done = 0;
  for (; done < mutations; done++) {
    if ((double)(clock() - start) / CLOCKS_PER_SEC > budget) break;
    size_t n = make_mutation(seed, done, b);
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL) die("out of memory", "input copy");
    memcpy(copy, b, n);
    now_mutation = (long long)done;
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
  }
  now_mutation = now_corpus = -1;
  printf("replay: %zu corpus inputs and %llu of %llu mutations (seed %llu) "
         "passed\n",
         ninputs, (unsigned long long)done, (unsigned long long)mutations,
         (unsigned long long)seed);
  free(b);
  return 0;
}
