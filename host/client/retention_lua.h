/*
 * retention_lua — the Lua both sides of retention run inside Redis: the
 * publish guard (libevbus, client.c) and the trimmer (evbusd,
 * host/retention/).  Sharing the text keeps one definition of the floor.
 *
 * The floor of a stream is the smallest entry id some protected consumer
 * group still owes: for each protected group the smaller of its oldest
 * pending entry (XPENDING) and its first unread entry (the id right after
 * last-delivered-id); the smallest over the groups.  Nothing at or above
 * the floor is ever trimmed.  A protected group that does not exist, or a
 * stream with no group at all, gives the floor 0-0: nothing is trimmed,
 * because nothing is known to have been read.
 *
 * With the archive on (retention.archive: postgres) neither side trims past
 * the archive's watermark, the policy hash's field `archived`: the id of
 * the last entry the archiver has committed to PostgreSQL (see
 * host/retention/retention_archive.h).  No watermark, nothing is trimmed.
 *
 * Private to the tree (not installed).
 */
#ifndef EVBUS_CLIENT_RETENTION_LUA_H
#define EVBUS_CLIENT_RETENTION_LUA_H

/* Functions: idcmp(a, b) -> -1/0/1; floor(stream, protect) -> id, group
 * (protect: "all" or "g1,g2"); cut_for(stream, keep) -> the id of the
 * first entry to keep so that at most `keep` remain, or nil;
 * archive_cap(policy) -> the smallest id the archive has not stored (the
 * cut it allows: '0-0' without a watermark), and the watermark or ''. */
#define EVBUS_RETENTION_LUA_FUNCS                                                              \
    "local function idcmp(a, b)\n"                                                            \
    "  local am, as = string.match(a, '^(%d+)%-(%d+)$')\n"                                    \
    "  local bm, bs = string.match(b, '^(%d+)%-(%d+)$')\n"                                    \
    "  am = tonumber(am); bm = tonumber(bm)\n"                                                \
    "  if am ~= bm then if am < bm then return -1 else return 1 end end\n"                    \
    "  as = tonumber(as); bs = tonumber(bs)\n"                                                \
    "  if as ~= bs then if as < bs then return -1 else return 1 end end\n"                    \
    "  return 0\n"                                                                            \
    "end\n"                                                                                   \
    "local function idnext(a)\n"                                                              \
    "  local m, s = string.match(a, '^(%d+)%-(%d+)$')\n"                                      \
    "  return m .. '-' .. string.format('%d', tonumber(s) + 1)\n"                             \
    "end\n"                                                                                   \
    "local function floor(stream, protect)\n"                                                 \
    "  local want = nil\n"                                                                    \
    "  if protect ~= 'all' then\n"                                                            \
    "    want = {}\n"                                                                         \
    "    for n in string.gmatch(protect, '[^,]+') do want[n] = true end\n"                    \
    "  end\n"                                                                                 \
    "  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)\n"                     \
    "  if not ok then return '0-0', '' end\n"                                                 \
    "  local fl, who, seen = nil, '', {}\n"                                                   \
    "  for _, g in ipairs(groups) do\n"                                                       \
    "    local f = {}\n"                                                                      \
    "    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"                                        \
    "    local name = f['name']\n"                                                            \
    "    if want == nil or want[name] then\n"                                                 \
    "      seen[name] = true\n"                                                               \
    "      local gf = idnext(f['last-delivered-id'])\n"                                       \
    "      if tonumber(f['pending']) > 0 then\n"                                              \
    "        local p = redis.call('XPENDING', stream, name)\n"                                \
    "        if p[2] and idcmp(p[2], gf) < 0 then gf = p[2] end\n"                            \
    "      end\n"                                                                             \
    "      if fl == nil or idcmp(gf, fl) < 0 then fl, who = gf, name end\n"                   \
    "    end\n"                                                                               \
    "  end\n"                                                                                 \
    "  if want ~= nil then\n"                                                                 \
    "    for n, _ in pairs(want) do if not seen[n] then return '0-0', n end end\n"            \
    "  end\n"                                                                                 \
    "  if fl == nil then return '0-0', '' end\n"                                              \
    "  return fl, who\n"                                                                      \
    "end\n"                                                                                   \
    "local function cut_for(stream, keep)\n"                                                  \
    "  local len = redis.call('XLEN', stream)\n"                                              \
    "  if len <= keep then return nil end\n"                                                  \
    "  local skip, start = len - keep, '-'\n"                                                 \
    "  while true do\n"                                                                       \
    "    local n = skip + 1\n"                                                                \
    "    if n > 1000 then n = 1000 end\n"                                                     \
    "    local r = redis.call('XRANGE', stream, start, '+', 'COUNT', n)\n"                    \
    "    if #r == 0 then return nil end\n"                                                    \
    "    if skip < #r then return r[skip + 1][1] end\n"                                       \
    "    skip = skip - #r\n"                                                                  \
    "    start = '(' .. r[#r][1]\n"                                                           \
    "  end\n"                                                                                 \
    "end\n"                                                                                   \
    "local function archive_cap(policy)\n"                                                    \
    "  local w = redis.call('HGET', policy, 'archived')\n"                                    \
    "  if w then return idnext(w), w end\n"                                                   \
    "  return '0-0', ''\n"                                                                    \
    "end\n"

/*
 * The publish guard: EVAL with KEYS = {stream, policy hash, full flag},
 * ARGV = {max_entries (0: the policy hash's), field, value, ...}.
 * Refuses with "EVBUSFULL ..." when the trimmer flagged the stream full
 * (max_bytes), or when it holds max_entries entries and trimming entries
 * every protected group is done with (and, with the archive on, that the
 * archive holds) cannot make room; else XADDs.
 */
#define EVBUS_RETENTION_LUA_PUBLISH                                                            \
    EVBUS_RETENTION_LUA_FUNCS                                                                 \
    "local full = redis.call('GET', KEYS[3])\n"                                               \
    "if full then return redis.error_reply('EVBUSFULL ' .. full) end\n"                       \
    "local pol = redis.call('HMGET', KEYS[2], 'max_entries', 'protect', 'archive')\n"         \
    "local max = tonumber(ARGV[1])\n"                                                         \
    "if max == 0 then max = tonumber(pol[1] or '0') or 0 end\n"                               \
    "if max > 0 and redis.call('XLEN', KEYS[1]) >= max then\n"                                \
    "  local fl, who = floor(KEYS[1], pol[2] or 'all')\n"                                     \
    "  local cut = cut_for(KEYS[1], max - 1)\n"                                               \
    "  if cut and idcmp(fl, cut) < 0 then cut = fl end\n"                                     \
    "  local archived = true\n"                                                               \
    "  if cut and pol[3] == 'postgres' then\n"                                                \
    "    local cap = archive_cap(KEYS[2])\n"                                                  \
    "    if idcmp(cap, cut) < 0 then cut = cap; archived = false end\n"                       \
    "  end\n"                                                                                 \
    "  if cut then redis.call('XTRIM', KEYS[1], 'MINID', cut) end\n"                          \
    "  local len = redis.call('XLEN', KEYS[1])\n"                                             \
    "  if len >= max then\n"                                                                  \
    "    if not archived then who = 'the archive (retention.archive) has not stored them yet'\n" \
    "    elseif who == '' then who = 'no consumer group has read them yet' else\n"            \
    "      who = 'consumer group ' .. who .. ' still owes them' end\n"                        \
    "    return redis.error_reply('EVBUSFULL stream ' .. KEYS[1] .. ' holds ' .. len ..\n"    \
    "      ' entries (retention.max_entries ' .. max .. ') and ' .. who)\n"                   \
    "  end\n"                                                                                 \
    "end\n"                                                                                   \
    "return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))\n"

#endif
