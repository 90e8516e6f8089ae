/*
 * Looking after a database, as Lua sees it: the database methods
 * storage, tables and backup, and core.verify(path) (runtime/admin.c does
 * the work; this only translates). views-lua/flume/init.lua wraps them as
 * db:storage(), db:tables(), db:backup() and db:verify().
 */
#include <string.h>

#include "lua/binding.h"

/* Raises err with the database's message of its last failure. */
static int raise_db(lua_State *L, flume_db *db, int err) {
  const char *msg = flume_db_errmsg(db);
  return flume__lua_raise(L, err, msg[0] ? msg : NULL);
}

static void set_int(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

/* db:storage() -> { page_size, map_size, used, readers, max_readers } */
static int ladmin_storage(lua_State *L) {
  flume_db *db = flume__lua_check_db(L, 1)->db;
  flume_storage_info st;
  int rc = flume_db_storage(db, &st);
  if (rc) return raise_db(L, db, rc);
  lua_createtable(L, 0, 5);
  set_int(L, "page_size", st.page_size);
  set_int(L, "map_size", st.map_size);
  set_int(L, "used", st.used);
  set_int(L, "readers", st.readers);
  set_int(L, "max_readers", st.max_readers);
  return 1;
}

/* The result of db:tables() at index res, its views at res + 1 and its
 * others at res + 2. */
typedef struct tables_ctx {
  lua_State *L; /* where the result is built */
  int res;      /* its stack index */
} tables_ctx;

static int on_table(void *ctx, const flume_table_info *t) {
  tables_ctx *c = ctx;
  lua_State *L = c->L;
  int into = strcmp(t->kind, "view") == 0    ? c->res + 1
             : strcmp(t->kind, "other") == 0 ? c->res + 2
                                             : c->res;
  lua_createtable(L, 0, 2);
  set_int(L, "entries", t->entries);
  set_int(L, "bytes", t->bytes);
  lua_setfield(L, into, t->name);
  return 0;
}

/* db:tables() -> { log = size, meta = size, views = { name = size },
 * other = { stored name = size } }, each size { entries, bytes }, from one
 * snapshot. */
static int ladmin_tables(lua_State *L) {
  flume_db *db = flume__lua_check_db(L, 1)->db;
  lua_settop(L, 1);
  lua_createtable(L, 0, 4);
  lua_newtable(L);
  lua_newtable(L);
  tables_ctx c = {L, 2};
  int rc = flume_db_tables(db, on_table, &c);
  if (rc) return raise_db(L, db, rc);
  lua_setfield(L, 2, "other");
  lua_setfield(L, 2, "views");
  return 1;
}

typedef struct backup_ctx {
  lua_State *L; /* the progress function is at index 4 */
  int failed;   /* it raised: its error is on top of the stack */
} backup_ctx;

static void on_progress(void *ctx, uint64_t bytes) {
  backup_ctx *b = ctx;
  if (b->failed) return;
  lua_pushvalue(b->L, 4);
  lua_pushinteger(b->L, (lua_Integer)bytes);
  if (lua_pcall(b->L, 1, 0, 0) != LUA_OK) b->failed = 1;
}

/* db:backup(dest, compact, progress): progress nil, or a function called
 * with the bytes written so far. An error it raises is raised again once
 * the copy has ended (a copy cannot be stopped halfway): the copy stays,
 * the caller decides what to do with it. */
static int ladmin_backup(lua_State *L) {
  flume_db *db = flume__lua_check_db(L, 1)->db;
  size_t len;
  const char *dest = luaL_checklstring(L, 2, &len);
  if (strlen(dest) != len)
    return flume__lua_raise(L, FLUME_EINVAL, "dest contains a NUL byte");
  int compact = lua_toboolean(L, 3);
  int has_progress = !lua_isnoneornil(L, 4);
  if (has_progress) luaL_checktype(L, 4, LUA_TFUNCTION);
  lua_settop(L, 4);
  backup_ctx b = {L, 0};
  int rc = flume_db_backup(db, dest, compact,
                           has_progress ? on_progress : NULL, &b);
  if (b.failed) return lua_error(L);
  if (rc) return raise_db(L, db, rc);
  return 0;
}

/* The result of core.verify at index res: tables at res + 1, damaged at
 * res + 2. */
typedef struct verify_ctx {
  lua_State *L; /* where the result is built */
  int res;      /* its stack index */
} verify_ctx;

static void append(lua_State *L, int list, const char *s) {
  lua_pushstring(L, s);
  lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
}

static void on_finding(void *ctx, const char *table, const char *damage) {
  verify_ctx *v = ctx;
  if (damage) append(v->L, v->res + 2, damage);
  else append(v->L, v->res + 1, table);
}

/* core.verify(path) -> { entries, tables = { name... }, damaged = { what...
 * }, crashed = true | nil }: every stored entry of the database in path,
 * read and checked in a child process (flume_verify). Damage is in the
 * result; what kept the walk from running or stopped it is raised. */
static int ladmin_verify(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  if (strlen(path) != len)
    return flume__lua_raise(L, FLUME_EINVAL, "the path contains a NUL byte");
  lua_settop(L, 1);
  lua_createtable(L, 0, 4);
  lua_newtable(L);
  lua_newtable(L);
  verify_ctx v = {L, 2};
  flume_verify_result r;
  int rc = flume_verify(path, on_finding, &v, &r);
  if (rc) return flume__lua_raise(L, rc, r.error[0] ? r.error : path);
  lua_setfield(L, 2, "damaged");
  lua_setfield(L, 2, "tables");
  set_int(L, "entries", r.entries);
  if (r.crashed) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "crashed");
  }
  return 1;
}

static const luaL_Reg admin_methods[] = {{"storage", ladmin_storage},
                                         {"tables", ladmin_tables},
                                         {"backup", ladmin_backup},
                                         {NULL, NULL}};

void flume__lua_admin_register(lua_State *L, int module, int methods) {
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, admin_methods, 0);
  lua_pop(L, 1);
  lua_pushcfunction(L, ladmin_verify);
  lua_setfield(L, module, "verify");
}
