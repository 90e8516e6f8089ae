/* Looking after a database from C (runtime/admin.c): flume_db_storage,
 * flume_db_tables, flume_db_backup and flume_verify, on a writer's handle
 * and a read-only one, and their errors. Beside a writer in another process
 * is spec/cli_readonly_spec.lua's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "flume.h"
#include "tmpdir.h"

static uv_loop_t loop;

static void appended(void *ctx, int status, int64_t seq) {
  CHECK_OK(status);
  *(int64_t *)ctx = seq;
}

static void closed(void *ctx) { ++*(int *)ctx; }

static void close_db(flume_db *db) {
  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  while (!done) uv_run(&loop, UV_RUN_ONCE);
}

static void used(void *ctx, int status, flume_view *v) {
  CHECK_OK(status);
  *(flume_view **)ctx = v;
}

static void waited(void *ctx, int status) {
  CHECK_OK(status);
  *(int *)ctx = 1;
}

/* What flume_db_tables told. */
typedef struct seen {
  int count;           /* tables */
  int stop_at;         /* return 7 at this one (0: never) */
  uint64_t log;        /* the log's entries */
  int first_is_log;    /* the log came first */
  int meta;            /* a "meta" table came */
  uint64_t view;       /* entries of the view "c" */
} seen;

static int on_table(void *ctx, const flume_table_info *t) {
  seen *s = ctx;
  s->count++;
  if (s->count == 1) s->first_is_log = strcmp(t->kind, "log") == 0;
  if (strcmp(t->kind, "log") == 0) s->log = t->entries;
  if (strcmp(t->kind, "meta") == 0 && strcmp(t->name, "meta") == 0)
    s->meta = 1;
  if (strcmp(t->kind, "view") == 0 && strcmp(t->name, "c") == 0)
    s->view = t->entries;
  CHECK(t->bytes > 0);
  return s->count == s->stop_at ? 7 : 0;
}

static void check_tables(flume_db *db) {
  seen s = {0};
  CHECK_OK(flume_db_tables(db, on_table, &s));
  CHECK(s.count == 3 && s.first_is_log && s.meta);
  CHECK(s.log == 100);
  CHECK(s.view == 3); /* three keys: i % 3 */
  seen stop = {.stop_at = 2};
  CHECK_ERR(flume_db_tables(db, on_table, &stop), 7);
  CHECK(stop.count == 2);
}

static void check_storage(flume_db *db) {
  flume_storage_info st;
  CHECK_OK(flume_db_storage(db, &st));
  CHECK(st.page_size >= 512 && st.used > 0 && st.map_size >= st.used);
  CHECK(st.max_readers > 0 && st.readers <= st.max_readers);
}

static void on_progress(void *ctx, uint64_t bytes) {
  (void)bytes;
  ++*(int *)ctx;
}

/* What flume_verify told. */
typedef struct found {
  int tables;  /* tables entered */
  int damaged; /* damaged places */
  char last[512]; /* the last damage */
} found;

static void on_finding(void *ctx, const char *table, const char *damage) {
  found *f = ctx;
  CHECK(table != NULL);
  if (damage == NULL) {
    f->tables++;
    return;
  }
  f->damaged++;
  snprintf(f->last, sizeof f->last, "%s", damage);
}

/* Flips a byte of the first "MARK" in dir/data.mdb. */
static void damage(const char *dir) {
  char file[700];
  snprintf(file, sizeof file, "%s/data.mdb", dir);
  FILE *f = fopen(file, "r+b");
  CHECK(f != NULL);
  CHECK(fseek(f, 0, SEEK_END) == 0);
  long n = ftell(f);
  char *b = malloc((size_t)n);
  CHECK(b != NULL);
  rewind(f);
  CHECK(fread(b, 1, (size_t)n, f) == (size_t)n);
  char *at = memmem(b, (size_t)n, "MARK", 4);
  CHECK(at != NULL);
  CHECK(fseek(f, (long)(at - b), SEEK_SET) == 0);
  CHECK(fputc('W', f) != EOF);
  CHECK(fclose(f) == 0);
  free(b);
}

int main(void) {
  CHECK_OK(uv_loop_init(&loop));
  char root[512], dir[600], copy[600], copy2[600], none[600];
  temp_dir(root, sizeof root, "admin");
  snprintf(dir, sizeof dir, "%s/db", root);
  snprintf(copy, sizeof copy, "%s/copy", root);
  snprintf(copy2, sizeof copy2, "%s/copy2", root);
  snprintf(none, sizeof none, "%s/none", root);

  /* A writer: 100 values and a view of three keys. */
  flume_db *db;
  flume_db_options o;
  flume_db_options_init(&o);
  o.codec = "msgpack";
  CHECK_OK(flume_db_open(&loop, dir, &o, &db));
  flume_buf vals[100];
  unsigned char bytes[100][8];
  for (int i = 0; i < 100; i++) {
    /* msgpack: the string "MARK" and an integer below 128 */
    bytes[i][0] = 0x92;
    bytes[i][1] = 0xa4;
    memcpy(bytes[i] + 2, "MARK", 4);
    bytes[i][6] = (unsigned char)i;
    vals[i] = (flume_buf){bytes[i], 7};
  }
  int64_t last = -2;
  CHECK_OK(flume_db_append(db, vals, 100, appended, &last));
  while (last == -2) uv_run(&loop, UV_RUN_ONCE);
  static const char script[] = "return { version = 1, map = function(v) "
                               "return v[2] % 3, 1 end, reduce = "
                               "function(a, n) return (a or 0) + n end }";
  flume_view *v = NULL;
  CHECK_OK(flume_view_use(db, "c", script, sizeof script - 1, used, &v));
  while (v == NULL) uv_run(&loop, UV_RUN_ONCE);
  int ready = 0;
  CHECK_OK(flume_view_wait(v, -1, waited, &ready));
  while (!ready) uv_run(&loop, UV_RUN_ONCE);

  check_storage(db);
  check_tables(db);

  /* Backups: into an existing empty folder, never over a database. */
  CHECK(mkdir(copy, 0755) == 0);
  int ticks = 0; /* none when the copy takes under a tenth of a second */
  CHECK_OK(flume_db_backup(db, copy, 1, on_progress, &ticks));
  CHECK_ERR(flume_db_backup(db, copy, 1, NULL, NULL), -EEXIST);
  CHECK(strstr(flume_db_errmsg(db), copy) != NULL);
  CHECK_ERR(flume_db_backup(db, none, 0, NULL, NULL), -ENOENT);
  CHECK_ERR(flume_db_backup(db, "", 0, NULL, NULL), FLUME_EINVAL);
  CHECK_ERR(flume_db_backup(db, NULL, 0, NULL, NULL), FLUME_EINVAL);
  CHECK_ERR(flume_db_storage(db, NULL), FLUME_EINVAL);
  CHECK_ERR(flume_db_tables(db, NULL, NULL), FLUME_EINVAL);

  /* The walk, with the writer's handle open in this process. */
  flume_verify_result r;
  found f = {0};
  CHECK_OK(flume_verify(dir, on_finding, &f, &r));
  CHECK(r.damaged == 0 && f.damaged == 0 && !r.crashed);
  CHECK(r.tables == 4 && f.tables == 4); /* free pages too */
  CHECK(r.entries >= 100 + 3 + 3);
  close_db(db);

  /* The backup is a database; a read-only handle looks after it too. */
  flume_db_options ro;
  flume_db_options_init(&ro);
  ro.readonly = 1;
  CHECK_OK(flume_db_open(&loop, copy, &ro, &db));
  CHECK(flume_db_since(db) == 99);
  check_storage(db);
  check_tables(db);
  CHECK(mkdir(copy2, 0755) == 0);
  CHECK_OK(flume_db_backup(db, copy2, 0, NULL, NULL));
  /* once closing, nothing more */
  int done = 0;
  CHECK_OK(flume_db_close(db, closed, &done));
  flume_storage_info st;
  CHECK_ERR(flume_db_storage(db, &st), FLUME_ECLOSED);
  CHECK_ERR(flume_db_backup(db, none, 0, NULL, NULL), FLUME_ECLOSED);
  while (!done) uv_run(&loop, UV_RUN_ONCE);

  /* A damaged value is found and named; the walk goes on. */
  damage(copy2);
  memset(&f, 0, sizeof f);
  CHECK_OK(flume_verify(copy2, on_finding, &f, &r));
  CHECK(r.damaged == 1 && f.damaged == 1 && !r.crashed);
  CHECK(strstr(f.last, "damaged") != NULL);
  CHECK(r.tables == 4);

  /* No database, no folder, no memory database. */
  CHECK_ERR(flume_verify(none, NULL, NULL, &r), FLUME_ENOTFOUND);
  CHECK(strstr(r.error, none) != NULL);
  CHECK_ERR(flume_verify(NULL, NULL, NULL, &r), FLUME_EINVAL);
  CHECK_ERR(flume_verify(dir, NULL, NULL, NULL), FLUME_EINVAL);
  CHECK_OK(flume_db_open(&loop, NULL, NULL, &db));
  CHECK_ERR(flume_db_backup(db, copy2, 0, NULL, NULL), FLUME_EINVAL);
  CHECK_OK(flume_db_storage(db, &st));
  close_db(db);

  remove_dir(root);
  CHECK_OK(uv_loop_close(&loop));
  printf("looking after a database from C: ok\n");
  return 0;
}
