/*
 * pause_lua — the Lua both sides of a handler pause run inside Redis: the
 * retry mover (evbusd, host/core/engine.c), which parks due retries of a
 * paused instance instead of moving them, and the unpark sweep (libevbus,
 * pause.c), which gives them back their due time once the instance is no
 * longer paused.  Sharing the text keeps one definition of "this schedule
 * member belongs to a paused instance": both must agree, or an entry could
 * be parked by one and never found by the other.
 *
 * Private to the tree (not installed).
 */
#ifndef EVBUS_CLIENT_PAUSE_LUA_H
#define EVBUS_CLIENT_PAUSE_LUA_H

/* Functions: member_instance(m) -> the instance a retry schedule member
 * ("<meta JSON>\n<raw event>") targets (its meta's "h" up to the first
 * '/'), or nil when the member is malformed; is_paused(m, paused_key) ->
 * true when that instance is a field of the pause hash. */
#define EVBUS_PAUSE_LUA_FUNCS                                                                  \
    "local function member_instance(m)\n"                                                     \
    "  local nl = string.find(m, '\\n', 1, true)\n"                                           \
    "  if not nl then return nil end\n"                                                       \
    "  local ok, meta = pcall(cjson.decode, string.sub(m, 1, nl - 1))\n"                      \
    "  if not ok or type(meta) ~= 'table' or type(meta.h) ~= 'string' then return nil end\n" \
    "  return string.match(meta.h, '^[^/]+')\n"                                               \
    "end\n"                                                                                   \
    "local function is_paused(m, paused_key)\n"                                               \
    "  local inst = member_instance(m)\n"                                                     \
    "  return inst ~= nil and redis.call('HEXISTS', paused_key, inst) == 1\n"                 \
    "end\n"

#endif
